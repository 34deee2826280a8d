export type { TextTokenizer } from './text-tokenizer.js';
export { loadTokenizer } from './load-tokenizer.js';
