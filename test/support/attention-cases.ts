/**
 * The attention cases every attention kernel is tested on: the reference backend's TypeScript
 * kernel against a float64 definition (`packages/backends/reference/src/kernels/attention.test.ts`),
 * and the WGSL kernels against that TypeScript kernel (`test/webgpu-kernels.test.ts`).
 */
import type { AttentionOperands } from '../../packages/backends/reference/src/kernels/attention.js';

/** `[n new rows, past cached indices, headDim, numHeads, numKvHeads]`. */
export type AttentionCase = readonly [n: number, past: number, headDim: number, numHeads: number, numKvHeads: number];

/**
 * Decode (1 row), shadow chunks (2, 3, 5 rows), a prompt (9 rows); head dims with and without
 * leftovers past the 8-wide value groups and 4-wide score groups; GQA and MHA; tiles of 64 keys crossed.
 */
export const ATTENTION_CASES: readonly AttentionCase[] = [
  [1, 130, 16, 4, 2],
  [2, 70, 64, 2, 2],
  [3, 65, 10, 3, 1],
  [5, 0, 6, 2, 2],
  [9, 200, 12, 4, 4],
  [1, 0, 8, 2, 1],
];

export const describeAttentionCase = ([n, past, headDim, numHeads, numKvHeads]: AttentionCase): string =>
  `${n} rows over ${past} cached, head_dim ${headDim}, ${numHeads}/${numKvHeads} heads`;

/**
 * Smooth, deterministic operands for `c`: a cache with 5 spare indices, and the query rows at row
 * offset 2 of a buffer of n + 3 rows (as a second sequence's rows of a batch are), `out` the same
 * size and zero.
 */
export function attentionOperands([n, past, headDim, numHeads, numKvHeads]: AttentionCase): AttentionOperands {
  const capacity = past + n + 5;
  const keys = Float32Array.from({ length: numKvHeads * capacity * headDim }, (_, i) => Math.sin(i * 0.37));
  const values = Float32Array.from({ length: numKvHeads * capacity * headDim }, (_, i) => Math.cos(i * 0.11));
  const width = numHeads * headDim;
  const q = Float32Array.from({ length: (n + 3) * width }, (_, i) => Math.sin(i * 0.73) * 2);
  const out = new Float32Array((n + 3) * width);
  return [q, 2, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out];
}
