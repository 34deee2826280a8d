import {
  DynamicNtkSchedule,
  LongRopeSchedule,
  Session,
  createRopeSchedule,
  greedyDecode,
  greedyNoCache,
  loadCheckpoint,
  noCacheForward,
} from '@ropeswitch/core';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { describe, expect, it } from 'vitest';
import { type HfExpected, hfCases, hfDir, inputIds, maxAbsDiff, readExpected } from './support/fixtures.js';

// Exactness against HF transformers 4.45 (test/fixtures/hf/README.md): logits within 1e-4,
// inv_freq within 1e-6 relative (and bit-exact where the fixture gives float32 bits).
const LOGIT_TOL = 1e-4;

async function open(name: string) {
  const checkpoint = await loadCheckpoint(`${hfDir}${name}`);
  return { checkpoint, backend: new ReferenceBackend(checkpoint.config, checkpoint.weights) };
}

function expectRelClose(actual: ArrayLike<number>, expected: readonly number[], tol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i]! - expected[i]!) / Math.abs(expected[i]!)).toBeLessThanOrEqual(tol);
  }
}

function f32Bits(values: Float32Array): number[] {
  return Array.from(new Uint32Array(values.buffer, values.byteOffset, values.length));
}

/** Teacher-forced stale loop: prefill the prompt, then feed `tokens` one at a time with the cache kept. */
async function staleTeacherForced(backend: ReferenceBackend, e: HfExpected, tokens: number[]): Promise<Float32Array[]> {
  const session = new Session(backend);
  const out = [await session.forward(e.prompt)];
  for (const t of tokens.slice(0, -1)) out.push(await session.forward([t]));
  return out;
}

function expectLogitsClose(actual: Float32Array[], expected: number[][]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((l, i) => expect(maxAbsDiff(l, expected[i]!), `step ${i}`).toBeLessThanOrEqual(LOGIT_TOL));
}

describe.each(hfCases())('HF fixture %s', (name) => {
  const e = readExpected(name);

  it('rotary frequencies and attention factor match HF', async () => {
    const { checkpoint } = await open(name);
    const schedule = createRopeSchedule(checkpoint.config.rope);
    if (schedule instanceof LongRopeSchedule) {
      expectRelClose(schedule.short.invFreq, e.inv_freq_short!, 1e-6);
      expectRelClose(schedule.long.invFreq, e.inv_freq_long!, 1e-6);
      if (e.inv_freq_short_f32_bits) expect(f32Bits(schedule.short.invFreq)).toEqual(e.inv_freq_short_f32_bits);
      if (e.inv_freq_long_f32_bits) expect(f32Bits(schedule.long.invFreq)).toEqual(e.inv_freq_long_f32_bits);
      expect(Math.abs(schedule.short.attentionFactor - e.attention_factor) / e.attention_factor).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(schedule.long.attentionFactor - e.attention_factor) / e.attention_factor).toBeLessThanOrEqual(1e-6);
    } else {
      expect(schedule).toBeInstanceOf(DynamicNtkSchedule);
      expectRelClose(schedule.regimeFor(1).invFreq, e.inv_freq_default!, 1e-6);
      for (const [length, freqs] of Object.entries(e.inv_freq_dynamic!)) {
        expectRelClose(schedule.regimeFor(Number(length)).invFreq, freqs, 1e-6);
      }
      expect(schedule.regimeFor(100).attentionFactor).toBe(e.attention_factor);
    }
  });

  it('full forward without cache matches, short and long', async () => {
    const { backend } = await open(name);
    const short = await noCacheForward(backend, inputIds(e, e.full_forward_short));
    expect(maxAbsDiff(short, e.full_forward_short.logits)).toBeLessThanOrEqual(LOGIT_TOL);
    const ids = inputIds(e, e.full_forward_long);
    const { positions } = e.full_forward_long;
    expect(positions[positions.length - 1]).toBe(ids.length - 1);
    const long = await noCacheForward(backend, ids, { last: positions.length });
    expect(maxAbsDiff(long, e.full_forward_long.logits.flat())).toBeLessThanOrEqual(LOGIT_TOL);
  });

  it('a stale cached loop reproduces HF custom-loop generation', async () => {
    const { backend } = await open(name);
    // Dynamic NTK: HF generate() itself keeps stale keys, so its greedy run is the stale one.
    const stale = e.greedy_stale ?? e.greedy_hf;
    const result = await greedyDecode(new Session(backend), e.prompt, { maxNewTokens: e.greedy_hf.max_new_tokens });
    expect(result.tokens).toEqual(stale.tokens);
    expectLogitsClose(result.logits, stale.logits);
    if (e.stale_teacher_forced) {
      expectLogitsClose(await staleTeacherForced(backend, e, e.greedy_hf.tokens), e.stale_teacher_forced.logits);
    }
  });
});

// Dynamic NTK cases also carry the oracle: a no-cache forward per step under the current length's frequencies.
describe.each(hfCases().filter((n) => readExpected(n).oracle_teacher_forced))('HF fixture %s oracle', (name) => {
  const e = readExpected(name);

  it('the no-cache oracle matches HF, teacher-forced and free-running', async () => {
    const { backend } = await open(name);
    const forced = e.oracle_teacher_forced!;
    for (let step = 0; step < forced.tokens.length; step++) {
      const logits = await noCacheForward(backend, [...e.prompt, ...forced.tokens.slice(0, step)]);
      expect(maxAbsDiff(logits, forced.logits[step]!), `step ${step}`).toBeLessThanOrEqual(LOGIT_TOL);
    }
    const free = await greedyNoCache(backend, e.prompt, { maxNewTokens: e.greedy_oracle!.tokens.length });
    expect(free.tokens).toEqual(e.greedy_oracle!.tokens);
    expectLogitsClose(free.logits, e.greedy_oracle!.logits);
  });
});

// Angle precision: HF multiplies p·ω in float32. Near p = 4100 float64 angles move logits by ~6e-4
// (the fixture's own diagnostic), so the float64 option is real and the float32 default is needed.
describe('angle precision at the real threshold (seed5-phi3-real-threshold)', () => {
  const name = 'seed5-phi3-real-threshold';
  const e = readExpected(name) as HfExpected & { diagnostics: { full_forward_long_maxabs_if_rope_angles_in_float64: number } };

  it('float64 angles move the long-regime logits as much as HF measured; float32 matches', async () => {
    const checkpoint = await loadCheckpoint(`${hfDir}${name}`);
    const f64 = new ReferenceBackend(checkpoint.config, checkpoint.weights, { anglePrecision: 'float64' });
    const ids = inputIds(e, e.full_forward_long);
    const logits = await noCacheForward(f64, ids, { last: e.full_forward_long.positions.length });
    const drift = maxAbsDiff(logits, e.full_forward_long.logits.flat());
    const hfDrift = e.diagnostics.full_forward_long_maxabs_if_rope_angles_in_float64;
    expect(drift).toBeGreaterThan(LOGIT_TOL);
    expect(drift).toBeGreaterThan(hfDrift / 3);
    expect(drift).toBeLessThan(hfDrift * 3);
  });
});
