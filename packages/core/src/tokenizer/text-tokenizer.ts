/** Text ↔ token ids for a model folder (its `tokenizer.json`), so prompts can be text. */
export interface TextTokenizer {
  /** Token ids of `text`, special tokens added as the tokenizer's post-processor says (like HF `tokenizer(text)`). */
  encode(text: string): number[];
  /** The text of `ids` (empty for none); special tokens are kept unless `skipSpecialTokens`. */
  decode(ids: ArrayLike<number>, options?: { readonly skipSpecialTokens?: boolean }): string;
}
