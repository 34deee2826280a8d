import { describe, expect, it } from 'vitest';
import type { RopeConfig, RopePairing } from '../config/model-config.js';
import { parseModelConfig } from '../config/parse-config.js';
import { longRopeScaling } from '@ropeswitch/testkit';
import { SeededRandom } from '../random/seeded-random.js';
import { applyRotary } from './apply-rotary.js';
import { baseFrequencies } from './base-frequencies.js';
import { createRopeSchedule } from './create-schedule.js';
import { DynamicNtkSchedule } from './dynamic-ntk-schedule.js';
import { LongRopeSchedule, longRopeAttentionFactor } from './long-rope-schedule.js';
import { type RopeRegime, makeRegime } from './regime.js';
import { type RotaryTables, rerotationTables, rotaryAngle, rotaryTables } from './rotary-tables.js';
import { StaticRopeSchedule } from './static-schedule.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** Core's seeded mulberry32 as a function, so property tests are reproducible. */
function mulberry32(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.next();
}

const randInt = (rand: () => number, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
const randVec = (rand: () => number, n: number): Float32Array => Float32Array.from({ length: n }, () => rand() * 4 - 2);

function relErr(actual: number, expected: number): number {
  return Math.abs(actual - expected) / Math.abs(expected);
}

function expectRelClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(relErr(actual[i]!, expected[i]!), `index ${i}: ${actual[i]} vs ${expected[i]}`).toBeLessThanOrEqual(tol);
  }
}

function norm(x: ArrayLike<number>, from = 0, to = x.length): number {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i]! * x[i]!;
  return Math.sqrt(s);
}

/** ‖a − b‖ / ‖b‖ over the whole vectors. */
function vecRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < b.length; i++) d += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(d) / norm(b);
}

/** A Llama-family config with the given rope fields, parsed the way a user's config.json would be. */
function ropeOf(fields: Record<string, unknown>, headDim = 16): RopeConfig {
  return parseModelConfig({
    model_type: 'llama',
    vocab_size: 32,
    hidden_size: headDim * 2,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    head_dim: headDim,
    max_position_embeddings: 2048,
    ...fields,
  }).rope;
}

/** A Phi-3 LongRoPE config (r = 8: four factors each). */
function phi3Rope(overrides: { top?: Record<string, unknown>; scaling?: Record<string, unknown> } = {}): RopeConfig {
  return parseModelConfig({
    model_type: 'phi3',
    vocab_size: 32,
    hidden_size: 32,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    max_position_embeddings: 64,
    original_max_position_embeddings: 16,
    rope_theta: 10000,
    rope_scaling: {
      type: 'longrope',
      short_factor: [1.0, 1.1, 1.3, 1.7],
      long_factor: [2.0, 3.5, 5.0, 7.25],
      ...overrides.scaling,
    },
    ...overrides.top,
  }).rope;
}

/** Tables for one position written by hand (no attention factor). */
function handTables(angles: readonly number[]): RotaryTables {
  return {
    count: 1,
    half: angles.length,
    cos: Float32Array.from(angles, Math.cos),
    sin: Float32Array.from(angles, Math.sin),
  };
}

/** A random regime of `rotaryDim / 2` frequencies spread like real RoPE ones, with a random attention factor. */
function randomRegime(rand: () => number, rotaryDim: number, id: string): RopeRegime {
  const half = rotaryDim / 2;
  const f64 = Float64Array.from({ length: half }, (_, i) => (0.5 + rand()) * Math.pow(10000, (-2 * i) / rotaryDim));
  const f32 = Float32Array.from(f64);
  return makeRegime(id, 'static', f32, Float64Array.from(f32), 0.8 + 0.6 * rand());
}

function rotated(x: Float32Array, headDim: number, pairing: RopePairing, tables: RotaryTables, row = 0): Float32Array {
  const out = x.slice();
  applyRotary(out, 0, 1, headDim, pairing, tables, row);
  return out;
}

// ---------------------------------------------------------------------------------------------
// LongRoPE

describe('LongRopeSchedule', () => {
  it('switches strictly at L: S = L is short, S = L + 1 is long', () => {
    const schedule = createRopeSchedule(phi3Rope());
    expect(schedule).toBeInstanceOf(LongRopeSchedule);
    const s = schedule as LongRopeSchedule;
    expect(s.threshold).toBe(16);
    expect(s.changesEveryStep).toBe(false);
    expect(s.regimeFor(1)).toBe(s.short);
    expect(s.regimeFor(15)).toBe(s.short);
    expect(s.regimeFor(16)).toBe(s.short);
    expect(s.regimeFor(16).kind).toBe('short');
    expect(s.regimeFor(17)).toBe(s.long);
    expect(s.regimeFor(17).kind).toBe('long');
    expect(s.regimeFor(64)).toBe(s.long);
    expect(s.short.id).not.toBe(s.long.id);
  });

  it('accepts the legacy "su" type as longrope', () => {
    const s = createRopeSchedule(phi3Rope({ scaling: { type: 'su' } }));
    expect(s).toBeInstanceOf(LongRopeSchedule);
    expect(s.threshold).toBe(16);
  });

  it('frequencies are 1 / (λ_i · b^(2i/r)) for each regime', () => {
    const s = createRopeSchedule(phi3Rope()) as LongRopeSchedule;
    const r = 8;
    const expected = (factors: number[]) => factors.map((f, i) => 1 / (f * Math.pow(10000, (2 * i) / r)));
    expectRelClose(s.short.invFreq, expected([1.0, 1.1, 1.3, 1.7]), 1e-6);
    expectRelClose(s.long.invFreq, expected([2.0, 3.5, 5.0, 7.25]), 1e-6);
    expectRelClose(s.short.invFreq64, expected([1.0, 1.1, 1.3, 1.7]), 1e-12);
    expectRelClose(s.long.invFreq64, expected([2.0, 3.5, 5.0, 7.25]), 1e-12);
  });

  it('attention factor defaults to sqrt(1 + ln(M/L) / ln L)', () => {
    const s = createRopeSchedule(phi3Rope()) as LongRopeSchedule;
    const m = Math.sqrt(1 + Math.log(64 / 16) / Math.log(16));
    expect(relErr(s.short.attentionFactor64, m)).toBeLessThanOrEqual(1e-12);
    expect(relErr(s.long.attentionFactor64, m)).toBeLessThanOrEqual(1e-12);
    expect(s.short.attentionFactor).toBe(Math.fround(m));
    // Phi-3-mini-128k numbers: M = 131072, L = 4096.
    const phi = longRopeAttentionFactor(longRopeScaling({ shortFactor: [1], longFactor: [1] }));
    expect(relErr(phi, Math.sqrt(1 + Math.log(32) / Math.log(4096)))).toBeLessThanOrEqual(1e-12);
    expect(phi).toBeCloseTo(1.190238, 5);
  });

  it('attention factor is 1 when M/L ≤ 1', () => {
    const equal = createRopeSchedule(phi3Rope({ top: { max_position_embeddings: 16 } })) as LongRopeSchedule;
    expect(equal.short.attentionFactor).toBe(1);
    expect(equal.long.attentionFactor).toBe(1);
    const below = longRopeAttentionFactor(longRopeScaling({ shortFactor: [1], longFactor: [1], maxPositionEmbeddings: 2048 }));
    expect(below).toBe(1);
    const factorBelow = longRopeAttentionFactor(longRopeScaling({ shortFactor: [1], longFactor: [1], factor: 0.5 }));
    expect(factorBelow).toBe(1);
  });

  it('rope_scaling.factor replaces M/L in the attention factor', () => {
    const s = createRopeSchedule(phi3Rope({ scaling: { factor: 8 } })) as LongRopeSchedule;
    const m = Math.sqrt(1 + Math.log(8) / Math.log(16));
    expect(relErr(s.short.attentionFactor64, m)).toBeLessThanOrEqual(1e-12);
    expect(relErr(s.long.attentionFactor64, m)).toBeLessThanOrEqual(1e-12);
  });

  it('an explicit attention_factor wins over the formula', () => {
    const s = createRopeSchedule(phi3Rope({ scaling: { attention_factor: 1.3, factor: 8 } })) as LongRopeSchedule;
    expect(s.short.attentionFactor64).toBe(1.3);
    expect(s.long.attentionFactor64).toBe(1.3);
    expect(s.long.attentionFactor).toBe(Math.fround(1.3));
  });

  it('short_mscale / long_mscale give regime-specific attention factors', () => {
    const s = createRopeSchedule(phi3Rope({ scaling: { short_mscale: 1.1, long_mscale: 1.25 } })) as LongRopeSchedule;
    expect(s.short.attentionFactor64).toBe(1.1);
    expect(s.long.attentionFactor64).toBe(1.25);
    // At the top level of the config, as some exports write them.
    const top = createRopeSchedule(phi3Rope({ top: { short_mscale: 1.05, long_mscale: 1.4 } })) as LongRopeSchedule;
    expect(top.short.attentionFactor64).toBe(1.05);
    expect(top.long.attentionFactor64).toBe(1.4);
    // Only one given: the other regime keeps the default formula.
    const onlyLong = createRopeSchedule(phi3Rope({ scaling: { long_mscale: 1.5 } })) as LongRopeSchedule;
    expect(relErr(onlyLong.short.attentionFactor64, Math.sqrt(1 + Math.log(4) / Math.log(16)))).toBeLessThanOrEqual(1e-12);
    expect(onlyLong.long.attentionFactor64).toBe(1.5);
    // The tables carry each regime's own factor: cos² + sin² = m².
    const short = rotaryTables(s.short, [5]);
    const long = rotaryTables(s.long, [5]);
    for (let i = 0; i < short.half; i++) {
      expect(Math.hypot(short.cos[i]!, short.sin[i]!)).toBeCloseTo(1.1, 6);
      expect(Math.hypot(long.cos[i]!, long.sin[i]!)).toBeCloseTo(1.25, 6);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Dynamic NTK

describe('DynamicNtkSchedule', () => {
  const theta = 10000;
  const r = 16;
  const factor = 2;

  /** b' = b·(s·S/M − (s−1))^(r/(r−2)), then ω_i = b'^(−2i/r), all in float64. */
  const dynamicFreqs = (S: number, M: number): number[] => {
    const b = theta * Math.pow((factor * S) / M - (factor - 1), r / (r - 2));
    return Array.from({ length: r / 2 }, (_, i) => Math.pow(b, (-2 * i) / r));
  };

  it('threshold is max_position_embeddings (HF 4.45) unless original_max_position_embeddings is given', () => {
    const hf445 = createRopeSchedule(ropeOf({ max_position_embeddings: 32, rope_scaling: { type: 'dynamic', factor } }));
    expect(hf445).toBeInstanceOf(DynamicNtkSchedule);
    expect(hf445.threshold).toBe(32);
    expect(hf445.changesEveryStep).toBe(true);
    const newer = createRopeSchedule(
      ropeOf({ max_position_embeddings: 64, rope_scaling: { type: 'dynamic', factor, original_max_position_embeddings: 24 } }),
    );
    expect(newer.threshold).toBe(24);
    const top = createRopeSchedule(
      ropeOf({ max_position_embeddings: 64, original_max_position_embeddings: 20, rope_scaling: { type: 'dynamic', factor } }),
    );
    expect(top.threshold).toBe(20);
  });

  it('every S ≤ threshold maps to the base regime', () => {
    const s = createRopeSchedule(ropeOf({ max_position_embeddings: 32, rope_scaling: { type: 'dynamic', factor } })) as DynamicNtkSchedule;
    const base = s.regimeFor(1);
    expect(base).toBe(s.base);
    expect(base.kind).toBe('dynamic-base');
    for (let S = 1; S <= 32; S++) expect(s.regimeFor(S)).toBe(base);
    expectRelClose(base.invFreq64, Array.from({ length: r / 2 }, (_, i) => Math.pow(theta, (-2 * i) / r)), 1e-12);
    expect(base.attentionFactor).toBe(1);
  });

  it('each S past the threshold has its own regime, with the stretched base', () => {
    const M = 32;
    const s = createRopeSchedule(ropeOf({ max_position_embeddings: M, rope_scaling: { type: 'dynamic', factor } })) as DynamicNtkSchedule;
    const ids = new Set<string>([s.base.id]);
    for (let S = M + 1; S <= M + 40; S++) {
      const regime = s.regimeFor(S);
      expect(regime.kind).toBe('dynamic');
      expect(ids.has(regime.id), `S = ${S}: id ${regime.id} repeats`).toBe(false);
      ids.add(regime.id);
      expect(regime.attentionFactor).toBe(1);
      const expected = dynamicFreqs(S, M);
      expectRelClose(regime.invFreq, expected, 1e-6);
      expectRelClose(regime.invFreq64, expected, 1e-9);
    }
    // Asking again (after the memo was cycled) gives the same id and frequencies.
    const again = s.regimeFor(M + 1);
    expect(again.id).toBe([...ids][1]);
    expectRelClose(again.invFreq, dynamicFreqs(M + 1, M), 1e-6);
    // Neighbouring lengths really rotate differently (except ω_0 = 1).
    const a = s.regimeFor(M + 1).invFreq;
    const b = s.regimeFor(M + 2).invFreq;
    expect(a[1]).not.toBe(b[1]);
    expect(b[1]!).toBeLessThan(a[1]!);
  });

  it('uses original_max_position_embeddings as M_orig in the formula when given', () => {
    const s = createRopeSchedule(
      ropeOf({ max_position_embeddings: 64, rope_scaling: { type: 'dynamic', factor, original_max_position_embeddings: 24 } }),
    );
    expect(s.regimeFor(24)).toBe(s.regimeFor(1));
    expectRelClose(s.regimeFor(30).invFreq, dynamicFreqs(30, 24), 1e-6);
  });
});

// ---------------------------------------------------------------------------------------------
// Static schedules

describe('static schedules', () => {
  it('default: ω_i = b^(−2i/r), one regime for every S', () => {
    for (const [theta, headDim] of [
      [10000, 16],
      [500000, 64],
      [1e6, 12],
    ] as const) {
      const s = createRopeSchedule(ropeOf({ rope_theta: theta }, headDim));
      expect(s).toBeInstanceOf(StaticRopeSchedule);
      expect(s.type).toBe('default');
      expect(s.threshold).toBeUndefined();
      expect(s.changesEveryStep).toBe(false);
      expect(s.regimeFor(1)).toBe(s.regimeFor(100000));
      const expected = Array.from({ length: headDim / 2 }, (_, i) => Math.pow(theta, (-2 * i) / headDim));
      expectRelClose(s.regimeFor(1).invFreq, expected, 1e-6);
      expectRelClose(s.regimeFor(1).invFreq64, expected, 1e-12);
      expect(s.regimeFor(1).attentionFactor).toBe(1);
    }
    // No rope_scaling at all and an explicit {type: default} agree; baseFrequencies agrees too.
    const explicit = createRopeSchedule(ropeOf({ rope_scaling: { type: 'default' } })).regimeFor(1);
    const none = createRopeSchedule(ropeOf({})).regimeFor(1);
    expect(Array.from(explicit.invFreq)).toEqual(Array.from(none.invFreq));
    expect(Array.from(baseFrequencies(10000, 16).f32)).toEqual(Array.from(none.invFreq));
  });

  it('linear: the default frequencies divided by the factor', () => {
    const s = createRopeSchedule(ropeOf({ rope_scaling: { type: 'linear', factor: 4 } }));
    expect(s.type).toBe('linear');
    expect(s.regimeFor(1)).toBe(s.regimeFor(5000));
    const expected = Array.from({ length: 8 }, (_, i) => Math.pow(10000, (-2 * i) / 16) / 4);
    expectRelClose(s.regimeFor(1).invFreq, expected, 1e-6);
    expectRelClose(s.regimeFor(1).invFreq64, expected, 1e-12);
    expect(s.regimeFor(1).attentionFactor).toBe(1);
  });

  it('llama3: matches HF _compute_llama3_parameters (all three bands present)', () => {
    const theta = 500000;
    const r = 64;
    const factor = 8;
    const low = 1;
    const high = 4;
    const old = 8192;
    const s = createRopeSchedule(
      ropeOf(
        {
          rope_theta: theta,
          max_position_embeddings: 131072,
          rope_scaling: { rope_type: 'llama3', factor, low_freq_factor: low, high_freq_factor: high, original_max_position_embeddings: old },
        },
        r,
      ),
    );
    expect(s.type).toBe('llama3');
    // HF, written out independently in float64.
    const lowWavelen = old / low;
    const highWavelen = old / high;
    const bands = new Set<string>();
    const expected = Array.from({ length: r / 2 }, (_, i) => {
      const w = 1 / Math.pow(theta, (2 * i) / r);
      const wavelen = (2 * Math.PI) / w;
      if (wavelen < highWavelen) {
        bands.add('high');
        return w;
      }
      if (wavelen > lowWavelen) {
        bands.add('low');
        return w / factor;
      }
      bands.add('medium');
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (w / factor) + smooth * w;
    });
    expect([...bands].sort()).toEqual(['high', 'low', 'medium']);
    expectRelClose(s.regimeFor(1).invFreq, expected, 1e-6);
    expectRelClose(s.regimeFor(1).invFreq64, expected, 1e-9);
    expect(s.regimeFor(1).attentionFactor).toBe(1);
  });

  it('yarn: matches HF _compute_yarn_parameters (ramp, attention factor)', () => {
    const theta = 10000;
    const r = 64;
    const factor = 4;
    const M = 2048;
    const s = createRopeSchedule(ropeOf({ rope_theta: theta, max_position_embeddings: M, rope_scaling: { type: 'yarn', factor } }, r));
    expect(s.type).toBe('yarn');
    // HF, written out independently in float64 (beta_fast 32, beta_slow 1).
    const correctionDim = (rot: number) => (r * Math.log(M / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
    const lo = Math.max(Math.floor(correctionDim(32)), 0);
    const hi = Math.min(Math.ceil(correctionDim(1)), r - 1);
    expect(lo).toBeGreaterThan(0);
    expect(hi).toBeLessThan(r / 2);
    const expected = Array.from({ length: r / 2 }, (_, i) => {
      const posFreq = Math.pow(theta, (2 * i) / r);
      const ramp = Math.min(Math.max((i - lo) / (hi - lo), 0), 1);
      const extrapolationFactor = 1 - ramp;
      return (1 / (factor * posFreq)) * (1 - extrapolationFactor) + (1 / posFreq) * extrapolationFactor;
    });
    const regime = s.regimeFor(1);
    expectRelClose(regime.invFreq, expected, 1e-6);
    expectRelClose(regime.invFreq64, expected, 1e-9);
    // The first pair extrapolates (unchanged), the last interpolates (divided by the factor).
    expect(relErr(regime.invFreq64[0]!, 1)).toBeLessThanOrEqual(1e-12);
    expect(relErr(regime.invFreq64[r / 2 - 1]!, Math.pow(theta, -(r - 2) / r) / factor)).toBeLessThanOrEqual(1e-12);
    expect(relErr(regime.attentionFactor64, 0.1 * Math.log(factor) + 1)).toBeLessThanOrEqual(1e-12);
    expect(s.regimeFor(1)).toBe(s.regimeFor(9999));

    const explicit = createRopeSchedule(
      ropeOf({ rope_theta: theta, max_position_embeddings: M, rope_scaling: { type: 'yarn', factor, attention_factor: 1.5 } }, r),
    );
    expect(explicit.regimeFor(1).attentionFactor64).toBe(1.5);
    const tables = rotaryTables(explicit.regimeFor(1), [7]);
    expect(Math.hypot(tables.cos[3]!, tables.sin[3]!)).toBeCloseTo(1.5, 6);
  });
});

// ---------------------------------------------------------------------------------------------
// applyRotary, tables, pairings

describe('applyRotary', () => {
  it('rotate-half pairs (x_i, x_{i+r/2}): hand-computed 4-dim example', () => {
    // Angles π/2 and θ with cos θ = 0.6, sin θ = 0.8.
    const tables: RotaryTables = { count: 1, half: 2, cos: Float32Array.of(0, 0.6), sin: Float32Array.of(1, 0.8) };
    const x = Float32Array.of(1, 2, 3, 4);
    applyRotary(x, 0, 1, 4, 'rotate-half', tables, 0);
    // out0 = 1·0 − 3·1, out2 = 3·0 + 1·1, out1 = 2·0.6 − 4·0.8, out3 = 4·0.6 + 2·0.8
    const expected = [-3, -2, 1, 4];
    expected.forEach((v, i) => expect(x[i]).toBeCloseTo(v, 6));
  });

  it('interleaved pairs (x_{2i}, x_{2i+1}): hand-computed 4-dim example', () => {
    const tables: RotaryTables = { count: 1, half: 2, cos: Float32Array.of(0, 0.6), sin: Float32Array.of(1, 0.8) };
    const x = Float32Array.of(1, 2, 3, 4);
    applyRotary(x, 0, 1, 4, 'interleaved', tables, 0);
    // out0 = 1·0 − 2·1, out1 = 2·0 + 1·1, out2 = 3·0.6 − 4·0.8, out3 = 4·0.6 + 3·0.8
    const expected = [-2, 1, -1.4, 4.8];
    expected.forEach((v, i) => expect(x[i]).toBeCloseTo(v, 6));
  });

  it('uses the table row of the position and the regime frequencies (p·ω_i)', () => {
    const regime = makeRegime('test', 'static', Float32Array.of(1, 0.25), Float64Array.of(1, 0.25), 1);
    const tables = rotaryTables(regime, [0, 2]);
    const x = Float32Array.of(1, 0, 0, 1);
    // Row 0 is position 0: identity.
    const id = rotated(x, 4, 'rotate-half', tables, 0);
    expect(Array.from(id)).toEqual([1, 0, 0, 1]);
    // Row 1 is position 2: angles 2 and 0.5.
    const out = rotated(x, 4, 'rotate-half', tables, 1);
    const expected = [Math.cos(2), -Math.sin(0.5), Math.sin(2), Math.cos(0.5)];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  });

  it('rotates several heads at an offset and touches nothing else', () => {
    const tables = handTables([0.7, 1.9]);
    const headDim = 4;
    const buf = Float32Array.from({ length: 3 + 2 * headDim + 3 }, (_, i) => i + 1);
    const orig = buf.slice();
    applyRotary(buf, 3, 2, headDim, 'rotate-half', tables, 0);
    for (const i of [0, 1, 2, 11, 12, 13]) expect(buf[i]).toBe(orig[i]);
    for (let h = 0; h < 2; h++) {
      const head = orig.slice(3 + h * headDim, 3 + (h + 1) * headDim);
      const want = rotated(head, headDim, 'rotate-half', tables);
      expect(Array.from(buf.slice(3 + h * headDim, 3 + (h + 1) * headDim))).toEqual(Array.from(want));
    }
  });

  it('partial rotary: dims ≥ r pass through unchanged, for both pairings', () => {
    const rand = mulberry32(7);
    for (const pairing of ['rotate-half', 'interleaved'] as const) {
      const headDim = 12;
      const r = 4;
      const regime = randomRegime(rand, r, 'partial');
      const tables = rotaryTables(regime, [37]);
      const x = randVec(rand, 3 * headDim);
      const y = x.slice();
      applyRotary(y, 0, 3, headDim, pairing, tables, 0);
      for (let h = 0; h < 3; h++) {
        for (let d = r; d < headDim; d++) expect(y[h * headDim + d]).toBe(x[h * headDim + d]);
        // The rotated part did change.
        expect(Array.from(y.slice(h * headDim, h * headDim + r))).not.toEqual(Array.from(x.slice(h * headDim, h * headDim + r)));
      }
    }
    // Through a parsed config: partial_rotary_factor 0.5 of head_dim 16 → r = 8.
    const rope = ropeOf({ partial_rotary_factor: 0.5 });
    expect(rope.rotaryDim).toBe(8);
    expect(createRopeSchedule(rope).regimeFor(1).invFreq.length).toBe(4);
  });
});

describe('rotaryTables and angles', () => {
  it('include the attention factor: cos = m·cos θ, sin = m·sin θ', () => {
    const regime = makeRegime('m', 'long', Float32Array.of(1, 0.1, 0.01), Float64Array.of(1, 0.1, 0.01), 1.19);
    const positions = [0, 3, 100];
    const t32 = rotaryTables(regime, positions);
    const t64 = rotaryTables(regime, positions, 'float64');
    expect(t32.count).toBe(3);
    expect(t32.half).toBe(3);
    positions.forEach((p, row) => {
      [1, 0.1, 0.01].forEach((w, i) => {
        const theta = p * Math.fround(w);
        expect(t32.cos[row * 3 + i]).toBeCloseTo(1.19 * Math.cos(theta), 5);
        expect(t32.sin[row * 3 + i]).toBeCloseTo(1.19 * Math.sin(theta), 5);
        expect(t64.cos[row * 3 + i]).toBeCloseTo(1.19 * Math.cos(theta), 5);
      });
    });
    // Position 0: cos = m exactly, sin = 0.
    expect(t32.cos[0]).toBe(Math.fround(1.19));
    expect(t32.sin[0]).toBe(0);
  });

  it('float32 angles reproduce fround(p·ω32); float64 uses p·ω64', () => {
    const regime = createRopeSchedule(ropeOf({}, 16)).regimeFor(1);
    for (const p of [1, 17, 4100]) {
      for (let i = 0; i < 8; i++) {
        expect(rotaryAngle(regime, p, i, 'float32')).toBe(Math.fround(p * regime.invFreq[i]!));
        expect(rotaryAngle(regime, p, i, 'float64')).toBe(p * regime.invFreq64[i]!);
      }
    }
  });

  it('float32 vs float64: angles differ at p = 4100, tables agree to 1e-6 at small p', () => {
    // Phi-3-mini-like: r = 96, b = 10000, long factors.
    const r = 96;
    const longFactor = Array.from({ length: r / 2 }, (_, i) => 1 + i * 0.37);
    const s = new LongRopeSchedule(10000, r, 'rotate-half', longRopeScaling({ shortFactor: longFactor.map(() => 1), longFactor }));
    for (const regime of [s.short, s.long]) {
      let maxDiff = 0;
      for (let i = 0; i < r / 2; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(rotaryAngle(regime, 4100, i, 'float32') - rotaryAngle(regime, 4100, i, 'float64')));
      }
      expect(maxDiff).toBeGreaterThan(1e-5);
      expect(maxDiff).toBeLessThan(1e-3);
      const far32 = rotaryTables(regime, [4100]);
      const far64 = rotaryTables(regime, [4100], 'float64');
      let farDiff = 0;
      for (let i = 0; i < r / 2; i++) farDiff = Math.max(farDiff, Math.abs(far32.cos[i]! - far64.cos[i]!), Math.abs(far32.sin[i]! - far64.sin[i]!));
      expect(farDiff).toBeGreaterThan(1e-5);

      const near = [0, 1, 2, 3, 7];
      const n32 = rotaryTables(regime, near);
      const n64 = rotaryTables(regime, near, 'float64');
      for (let k = 0; k < n32.cos.length; k++) {
        expect(Math.abs(n32.cos[k]! - n64.cos[k]!)).toBeLessThanOrEqual(1e-6);
        expect(Math.abs(n32.sin[k]! - n64.sin[k]!)).toBeLessThanOrEqual(1e-6);
      }
    }
  });

  it('rerotation tables between one regime and itself are the identity', () => {
    const regime = createRopeSchedule(phi3Rope()).regimeFor(40);
    const t = rerotationTables(regime, regime, [0, 5, 63]);
    for (let k = 0; k < t.cos.length; k++) {
      expect(t.cos[k]).toBe(1);
      expect(t.sin[k]).toBe(0);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

interface Case {
  pairing: RopePairing;
  headDim: number;
  rotaryDim: number;
  a: RopeRegime;
  b: RopeRegime;
  position: number;
  precision: 'float32' | 'float64';
}

/** Regime pairs from real schedules (LongRoPE short/long with mscales, dynamic NTK steps) and random ones. */
function randomCase(rand: () => number, k: number): Case {
  const rotaryDim = 2 * randInt(rand, 2, 12); // r ≥ 4: dynamic NTK raises to r/(r−2)
  const headDim = rand() < 0.4 ? rotaryDim + 2 * randInt(rand, 1, 4) : rotaryDim; // partial rotary 40% of the time
  const pairing: RopePairing = rand() < 0.5 ? 'rotate-half' : 'interleaved';
  const precision = rand() < 0.75 ? 'float32' : 'float64';
  let a: RopeRegime;
  let b: RopeRegime;
  switch (k % 3) {
    case 0: {
      const half = rotaryDim / 2;
      const factors = () => Array.from({ length: half }, () => 1 + 10 * rand());
      const s = new LongRopeSchedule(
        10000 * (1 + 50 * rand()),
        rotaryDim,
        pairing,
        longRopeScaling({
          shortFactor: factors(),
          longFactor: factors(),
          shortMscale: rand() < 0.5 ? 0.9 + 0.5 * rand() : undefined,
          longMscale: rand() < 0.5 ? 0.9 + 0.5 * rand() : undefined,
        }),
      );
      [a, b] = rand() < 0.5 ? [s.short, s.long] : [s.long, s.short];
      break;
    }
    case 1: {
      const s = new DynamicNtkSchedule(10000, rotaryDim, pairing, {
        type: 'dynamic',
        factor: 1 + 3 * rand(),
        originalMaxPositionEmbeddings: 64,
      });
      a = s.regimeFor(randInt(rand, 1, 200));
      b = s.regimeFor(randInt(rand, 1, 200));
      break;
    }
    default:
      a = randomRegime(rand, rotaryDim, 'A');
      b = randomRegime(rand, rotaryDim, 'B');
  }
  const position = rand() < 0.3 ? randInt(rand, 4000, 8000) : randInt(rand, 0, 300);
  return { pairing, headDim, rotaryDim, a, b, position, precision };
}

const CASES = 300;

describe('rotation properties (seeded random)', () => {
  it('rerotating A→B then B→A returns the key', () => {
    const rand = mulberry32(0x5eed1);
    for (let k = 0; k < CASES; k++) {
      const c = randomCase(rand, k);
      const raw = randVec(rand, c.headDim);
      const key = rotated(raw, c.headDim, c.pairing, rotaryTables(c.a, [c.position], c.precision));
      const there = rotated(key, c.headDim, c.pairing, rerotationTables(c.a, c.b, [c.position], c.precision));
      const back = rotated(there, c.headDim, c.pairing, rerotationTables(c.b, c.a, [c.position], c.precision));
      expect(vecRelErr(back, key), `case ${k}`).toBeLessThanOrEqual(1e-5);
    }
  });

  it('rotating under A then rerotating A→B equals rotating under B', () => {
    const rand = mulberry32(0x5eed2);
    const seen = new Set<string>();
    for (let k = 0; k < CASES; k++) {
      const c = randomCase(rand, k);
      seen.add(`${c.pairing}/${c.headDim > c.rotaryDim ? 'partial' : 'full'}`);
      const raw = randVec(rand, c.headDim);
      const underA = rotated(raw, c.headDim, c.pairing, rotaryTables(c.a, [c.position], c.precision));
      const moved = rotated(underA, c.headDim, c.pairing, rerotationTables(c.a, c.b, [c.position], c.precision));
      const underB = rotated(raw, c.headDim, c.pairing, rotaryTables(c.b, [c.position], c.precision));
      expect(vecRelErr(moved, underB), `case ${k}: ${c.a.id} → ${c.b.id} at p = ${c.position}`).toBeLessThanOrEqual(1e-5);
      // Partial rotary: the pass-through dims are the raw ones all along.
      for (let d = c.rotaryDim; d < c.headDim; d++) expect(moved[d]).toBe(raw[d]);
    }
    expect([...seen].sort()).toEqual(['interleaved/full', 'interleaved/partial', 'rotate-half/full', 'rotate-half/partial']);
  });

  it('rerotation tables of many positions equal the per-position ones', () => {
    const rand = mulberry32(0x5eed4);
    for (let k = 0; k < 30; k++) {
      const c = randomCase(rand, k);
      const positions = Array.from({ length: 5 }, () => randInt(rand, 0, 5000));
      const all = rerotationTables(c.a, c.b, positions, c.precision);
      positions.forEach((p, row) => {
        const one = rerotationTables(c.a, c.b, [p], c.precision);
        expect(Array.from(all.cos.slice(row * all.half, (row + 1) * all.half))).toEqual(Array.from(one.cos));
        expect(Array.from(all.sin.slice(row * all.half, (row + 1) * all.half))).toEqual(Array.from(one.sin));
      });
    }
  });

  it('rotation preserves the norm of the rotated part up to the attention factor', () => {
    const rand = mulberry32(0x5eed3);
    for (let k = 0; k < CASES; k++) {
      const c = randomCase(rand, k);
      const raw = randVec(rand, c.headDim);
      const mA = c.precision === 'float32' ? c.a.attentionFactor : c.a.attentionFactor64;
      const mB = c.precision === 'float32' ? c.b.attentionFactor : c.b.attentionFactor64;
      const underA = rotated(raw, c.headDim, c.pairing, rotaryTables(c.a, [c.position], c.precision));
      // Both pairings rotate within dims [0, r).
      const rotNorm = (v: Float32Array) => norm(v, 0, c.rotaryDim);
      expect(relErr(rotNorm(underA), mA * rotNorm(raw)), `case ${k}`).toBeLessThanOrEqual(1e-5);
      const moved = rotated(underA, c.headDim, c.pairing, rerotationTables(c.a, c.b, [c.position], c.precision));
      expect(relErr(rotNorm(moved), (mB / mA) * rotNorm(underA)), `case ${k}`).toBeLessThanOrEqual(1e-5);
      expect(norm(moved, c.rotaryDim)).toBe(norm(raw, c.rotaryDim));
    }
  });
});
