import { describe, expect, it } from 'vitest';
import { SessionError } from '../errors.js';
import { SeededRandom } from '../random/seeded-random.js';
import { type SamplingOptions, createSampler } from './sampler.js';

/** How often each id came out of `draws` samples of `logits`. */
function frequencies(options: SamplingOptions, logits: number[], draws: number): number[] {
  const sampler = createSampler(options);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits)]!++;
  return counts.map((c) => c / draws);
}

/** The tokens HF's warpers keep, with their renormalised probabilities, by a plain full sort. */
function keptByFullSort(logits: number[], options: SamplingOptions): Map<number, number> {
  const t = options.temperature ?? 1;
  const z = logits.map((l) => l / t);
  const ids = z.map((_, i) => i).sort((a, b) => z[b]! - z[a]! || a - b);
  let keep = ids.length;
  if (options.topK !== undefined) {
    keep = Math.min(options.topK, ids.length);
    while (keep < ids.length && z[ids[keep]!] === z[ids[keep - 1]!]) keep++;
  }
  const top = ids.slice(0, keep);
  const w = top.map((i) => Math.exp(z[i]! - z[ids[0]!]!));
  const sum = w.reduce((a, b) => a + b, 0);
  let n = 0;
  for (let mass = 0; n < top.length && mass < (options.topP ?? 1) * sum; n++) mass += w[n]!;
  const keptSum = w.slice(0, n).reduce((a, b) => a + b, 0);
  return new Map(top.slice(0, n).map((id, j) => [id, w[j]! / keptSum]));
}

const logOf = (probs: number[]): number[] => probs.map((p) => Math.log(p));

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(SessionError);
    return (err as SessionError).code;
  }
  return undefined;
}

describe('createSampler', () => {
  it('is greedy without options or at temperature 0, taking the first index on ties', () => {
    const tied = [0.5, 3, 3, -1];
    expect(createSampler().sample(tied)).toBe(1);
    expect(createSampler({ temperature: 0, seed: 9 }).sample(tied)).toBe(1);
    expect(createSampler({ temperature: 0, topK: 3, topP: 0.5 }).sample(Float32Array.of(1, 2, 7, 7))).toBe(2);
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const logits = Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7));
    const run = (seed: number) => {
      const sampler = createSampler({ seed, temperature: 1.3, topK: 40, topP: 0.95 });
      return Array.from({ length: 40 }, () => sampler.sample(logits));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    expect(new Set(run(7)).size).toBeGreaterThan(5); // really sampling, not stuck on one id
  });

  it('draws from the softmax of the logits', () => {
    const freq = frequencies({ seed: 1 }, logOf([0.1, 0.2, 0.7]), 20_000);
    expect(freq[0]).toBeCloseTo(0.1, 1);
    expect(freq[1]).toBeCloseTo(0.2, 1);
    expect(freq[2]).toBeCloseTo(0.7, 1);
  });

  it('temperature flattens (high) or sharpens (low) the distribution', () => {
    const logits = logOf([0.1, 0.2, 0.7]);
    const hot = frequencies({ seed: 2, temperature: 100 }, logits, 20_000);
    hot.forEach((f) => expect(f).toBeCloseTo(1 / 3, 1));
    const cold = frequencies({ seed: 2, temperature: 0.05 }, logits, 2_000);
    expect(cold[2]).toBeGreaterThan(0.999);
  });

  it('top-k keeps the k most likely tokens and those tied with the k-th', () => {
    const freq = frequencies({ seed: 3, topK: 2 }, [5, 4, 4, 3.9, 1], 5_000);
    expect(freq[1]! + freq[2]!).toBeGreaterThan(0.2);
    expect(freq[1]).toBeGreaterThan(0); // the tie with the 2nd is kept
    expect(freq[2]).toBeGreaterThan(0);
    expect(freq[3]).toBe(0);
    expect(freq[4]).toBe(0);
    // top-k = 1 is greedy.
    const one = createSampler({ seed: 3, topK: 1, temperature: 5 });
    for (let i = 0; i < 50; i++) expect(one.sample([0.1, 2, 1.9, -3])).toBe(1);
  });

  it('top-p keeps the smallest set reaching topP and renormalises it (HF semantics)', () => {
    const logits = logOf([0.05, 0.5, 0.15, 0.3]); // sorted: 1 (0.5), 3 (0.3), 2 (0.15), 0 (0.05)
    const two = frequencies({ seed: 4, topP: 0.75 }, logits, 20_000);
    expect(two[0]).toBe(0);
    expect(two[2]).toBe(0);
    expect(two[1]).toBeCloseTo(0.5 / 0.8, 1);
    expect(two[3]).toBeCloseTo(0.3 / 0.8, 1);
    const three = frequencies({ seed: 4, topP: 0.85 }, logits, 20_000);
    expect(three[0]).toBe(0);
    expect(three[2]).toBeGreaterThan(0.1);
    // A tiny topP still keeps one token: greedy.
    const tiny = createSampler({ seed: 4, topP: 1e-9, temperature: 3 });
    for (let i = 0; i < 50; i++) expect(tiny.sample(logits)).toBe(1);
  });

  it('keeps exactly the set a full sort gives (HF: temperature, then top-k, then top-p)', () => {
    const rng = new SeededRandom(12);
    for (const spread of [0.2, 3, 40]) {
      const logits = Array.from({ length: 300 }, () => rng.normal(spread));
      for (const options of [{ topK: 7 }, { topP: 0.6 }, { topK: 40, topP: 0.7, temperature: 0.8 }, { topP: 0.999 }]) {
        const kept = keptByFullSort(logits, options);
        const drawn = new Set<number>();
        const sampler = createSampler({ seed: 3, ...options });
        for (let i = 0; i < 3000; i++) drawn.add(sampler.sample(logits));
        const label = `spread ${spread} ${JSON.stringify(options)}`;
        for (const id of drawn) expect(kept.has(id), label).toBe(true);
        for (const [id, p] of kept) if (p > 0.01) expect(drawn.has(id), `${label}: ${id}`).toBe(true);
      }
    }
  });

  it('never draws a masked (-Infinity) token and resizes across vocabularies', () => {
    const sampler = createSampler({ seed: 5, temperature: 2 });
    for (let i = 0; i < 500; i++) expect(sampler.sample([0, -Infinity, 0.3, -Infinity])).not.toBe(1);
    expect([0, 1]).toContain(sampler.sample([1, 1]));
    expect(sampler.sample([-Infinity, -Infinity, -Infinity, 0, -Infinity, -Infinity])).toBe(3);
  });

  it('rejects logits it cannot sample from', () => {
    const sampler = createSampler({ seed: 6 });
    expect(codeOf(() => sampler.sample([-Infinity, -Infinity]))).toBe('bad-logits');
    expect(codeOf(() => sampler.sample([0, Number.NaN]))).toBe('bad-logits');
    expect(codeOf(() => sampler.sample([]))).toBe('empty-logits');
  });

  it('validates its options with SessionError codes', () => {
    expect(codeOf(() => createSampler({ temperature: -0.5 }))).toBe('bad-temperature');
    expect(codeOf(() => createSampler({ temperature: Number.NaN }))).toBe('bad-temperature');
    expect(codeOf(() => createSampler({ temperature: Infinity }))).toBe('bad-temperature');
    expect(codeOf(() => createSampler({ topK: 0 }))).toBe('bad-top-k');
    expect(codeOf(() => createSampler({ topK: 2.5 }))).toBe('bad-top-k');
    expect(codeOf(() => createSampler({ topP: 0 }))).toBe('bad-top-p');
    expect(codeOf(() => createSampler({ topP: 1.01 }))).toBe('bad-top-p');
    expect(codeOf(() => createSampler({ topP: Number.NaN }))).toBe('bad-top-p');
    expect(codeOf(() => createSampler({ seed: -1 }))).toBe('bad-seed');
    expect(codeOf(() => createSampler({ seed: 1.5 }))).toBe('bad-seed');
    expect(codeOf(() => createSampler({ temperature: 0.7, topK: 5, topP: 0.9, seed: 2 ** 32 - 1 }))).toBeUndefined();
  });
});
