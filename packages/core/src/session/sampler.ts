import { SessionError } from '../errors.js';
import { SeededRandom } from '../random/seeded-random.js';
import { argmax } from './argmax.js';

/**
 * How each next token is chosen from a position's logits. Absent, or `temperature: 0`, means greedy
 * (argmax). Otherwise the logits go through HF's warpers in HF's order (temperature → top-k →
 * top-p) and one token is drawn from what is left.
 */
export interface SamplingOptions {
  /** Divides the logits before the softmax (default 1). 0 means greedy. Finite and ≥ 0. */
  readonly temperature?: number;
  /** Keep only the `topK` most likely tokens (tokens tied with the k-th are kept too, like HF). A positive integer; omit for no limit. */
  readonly topK?: number;
  /**
   * Nucleus sampling: keep the smallest set of most likely tokens whose probabilities sum to at
   * least `topP` (always at least one token). In (0, 1]; 1 keeps every token.
   */
  readonly topP?: number;
  /** PRNG seed, an integer in [0, 2³²): same seed, logits and options → same tokens. Omit for a fresh random seed. */
  readonly seed?: number;
}

/** Chooses the next token from one position's logits (`[vocab]`). A sampler is stateful: each call advances its PRNG. */
export interface Sampler {
  /** The chosen token id for one position's logits (`[vocab]`). */
  sample(logits: ArrayLike<number>): number;
}

/**
 * A sampler for `options`: greedy when they are absent or `temperature` is 0, otherwise a seeded
 * sampler that works in float64.
 *
 * @throws SessionError `bad-temperature`, `bad-top-k`, `bad-top-p` or `bad-seed` for an option out of range.
 */
export function createSampler(options?: SamplingOptions): Sampler {
  if (options === undefined) return { sample: argmax };
  const temperature = options.temperature ?? 1;
  if (!Number.isFinite(temperature) || temperature < 0) {
    throw new SessionError('bad-temperature', `temperature must be a finite number ≥ 0 (0 = greedy); got ${temperature}`);
  }
  const topK = options.topK;
  if (topK !== undefined && (!Number.isInteger(topK) || topK < 1)) {
    throw new SessionError('bad-top-k', `topK must be a positive integer (omit it for no limit); got ${topK}`);
  }
  const topP = options.topP ?? 1;
  if (!(topP > 0 && topP <= 1)) throw new SessionError('bad-top-p', `topP must be in (0, 1] (1 = no limit); got ${topP}`);
  const seed = options.seed;
  if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)) {
    throw new SessionError('bad-seed', `seed must be an integer in [0, 2^32); got ${seed}`);
  }
  if (temperature === 0) return { sample: argmax };
  return new WarpedSampler(temperature, topK, topP, new SeededRandom(seed ?? Math.floor(Math.random() * 2 ** 32)));
}

/**
 * Temperature → top-k → top-p → one seeded draw. Scratch buffers are kept across calls (one
 * vocab's worth each). Top-k/top-p sort only the most likely tokens, found by a bisected cutoff
 * on the probability in about 11 linear passes.
 */
class WarpedSampler implements Sampler {
  /** logits / temperature, float64, `[vocab]`. */
  private scaled = new Float64Array(0);
  /** exp(scaled - max): unnormalised probabilities, `[vocab]`. */
  private weights = new Float64Array(0);
  /** Candidate token ids, most likely first once sorted. */
  private order = new Int32Array(0);
  // Descending by value; ties by id so the order (and so every draw) is deterministic.
  private readonly byValueDescending = (a: number, b: number): number => this.scaled[b]! - this.scaled[a]! || a - b;

  constructor(
    private readonly temperature: number,
    private readonly topK: number | undefined,
    private readonly topP: number,
    private readonly random: SeededRandom,
  ) {}

  sample(logits: ArrayLike<number>): number {
    const n = logits.length;
    if (n === 0) throw new SessionError('empty-logits', 'cannot sample from empty logits');
    if (this.scaled.length !== n) {
      this.scaled = new Float64Array(n);
      this.weights = new Float64Array(n);
      this.order = new Int32Array(n);
    }
    const { scaled, weights, order } = this;
    let max = -Infinity;
    for (let i = 0; i < n; i++) {
      const v = logits[i]! / this.temperature;
      if (Number.isNaN(v) || v === Infinity) throw new SessionError('bad-logits', `logit ${i} is ${logits[i]} (${v} after temperature)`);
      scaled[i] = v;
      if (v > max) max = v;
    }
    if (max === -Infinity) throw new SessionError('bad-logits', 'every logit is -Infinity: no token can be sampled');
    let total = 0;
    for (let i = 0; i < n; i++) total += weights[i] = Math.exp(scaled[i]! - max);

    const k = this.topK !== undefined && this.topK < n ? this.topK : undefined;
    if (k === undefined && this.topP === 1) return this.draw(total, n, (j) => j);

    // Tokens with weight ≥ cutoff are a prefix of the sorted order. Bisect the cutoff's exponent
    // (2^-e, e in [0, 1075]; 2^-1075 is 0, which takes every token) for the highest cutoff whose
    // prefix holds the top k or, without top-k, the topP mass: top-p's set then lies inside it,
    // and only that prefix is sorted.
    let lo = 0;
    let hi = 1075;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.prefixSuffices(2 ** -mid, k, total)) hi = mid;
      else lo = mid + 1;
    }
    // Then tighten it within (2^-lo, 2^-(lo-1)): flat distributions put many tokens in one octave.
    let cutoff = 2 ** -lo;
    if (lo > 0 && lo < 1075) {
      let above = 2 ** -(lo - 1);
      for (let step = 0; step < 8; step++) {
        const mid = (cutoff + above) / 2;
        if (this.prefixSuffices(mid, k, total)) cutoff = mid;
        else above = mid;
      }
    }
    let candidates = 0;
    for (let i = 0; i < n; i++) if (weights[i]! >= cutoff) order[candidates++] = i;
    order.subarray(0, candidates).sort(this.byValueDescending);

    let count = candidates;
    let sum = total;
    if (k !== undefined) {
      const kth = scaled[order[k - 1]!]!;
      count = k;
      while (count < candidates && scaled[order[count]!] === kth) count++;
      sum = 0;
      for (let j = 0; j < count; j++) sum += weights[order[j]!]!;
    }
    if (this.topP < 1) {
      // Keep token j while the probability of the tokens before it is < topP: the first token always,
      // and the one that brings the sum to ≥ topP (HF's rule, stated from the top).
      const bound = this.topP * sum;
      let kept = 0;
      let mass = 0;
      while (kept < count && mass < bound) mass += weights[order[kept++]!]!;
      count = kept;
      sum = mass;
    }
    return this.draw(sum, count, (j) => order[j]!);
  }

  /** Whether the tokens with weight ≥ `cutoff` include the top `k` (or, without k, the topP mass). */
  private prefixSuffices(cutoff: number, k: number | undefined, total: number): boolean {
    const { weights } = this;
    let count = 0;
    let mass = 0;
    for (let i = 0; i < weights.length; i++) {
      const w = weights[i]!;
      if (w >= cutoff) {
        count++;
        mass += w;
      }
    }
    // A hair of slack: the top-p loop re-adds this mass in sorted order, which may round lower.
    return k !== undefined ? count >= k : mass >= this.topP * total * (1 + 1e-12);
  }

  /** One draw among the tokens `idAt(0..count)`, whose weights add up to `sum`. */
  private draw(sum: number, count: number, idAt: (j: number) => number): number {
    const target = this.random.next() * sum;
    let acc = 0;
    for (let j = 0; j < count; j++) {
      acc += this.weights[idAt(j)]!;
      if (target < acc) return idAt(j);
    }
    return idAt(count - 1); // only reachable through rounding
  }
}
