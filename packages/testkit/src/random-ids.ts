import { SeededRandom } from '@ropeswitch/core';

/** `n` seeded token ids in `[0, vocab)`. */
export function randomIds(seed: number, n: number, vocab: number): number[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => rng.int(vocab));
}
