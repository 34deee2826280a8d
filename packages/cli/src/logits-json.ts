/** Splits `[position][vocab]` logits into one plain array per position, for JSON output. */
export function rows(logits: Float32Array, vocabSize: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < logits.length; i += vocabSize) out.push(Array.from(logits.subarray(i, i + vocabSize)));
  return out;
}
