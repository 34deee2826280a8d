/**
 * Property-based fuzzing of the `config.json` parser: whatever the input (text, JSON value, a valid
 * config with fields replaced by hostile values, deep nesting, prototype-polluting keys), the parser
 * either returns a config every other module can trust (sizes, factor lists, a RoPE schedule with
 * finite frequencies) or throws a `ConfigError`, and nothing else.
 *
 * `FUZZ_RUNS` sets the runs per property (200 by default; `npm run fuzz` runs 10,000).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fc, it } from '@fast-check/vitest';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ConfigError } from '../errors.js';
import { createRopeSchedule } from '../rope/create-schedule.js';
import { loadModelConfig } from './load-config.js';
import type { ModelConfig } from './model-config.js';
import { parseModelConfig } from './parse-config.js';
import { positionLimit } from './position-limit.js';
import { TINY_SIZES } from '@ropeswitch/testkit';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
/** Generous per-test budget: ~1 ms a run, plus slack. */
const TIMEOUT = 30_000 + RUNS * 5;
const params = { numRuns: RUNS };

// ---------------------------------------------------------------------------------------------
// Valid configs the mutations start from: one per family and RoPE type.

const factors = (n: number, lo: number, hi: number) => Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / Math.max(1, n - 1));

const BASES: Record<string, Record<string, unknown>> = {
  phi3Longrope: {
    model_type: 'phi3',
    ...TINY_SIZES,
    num_key_value_heads: 2,
    max_position_embeddings: 256,
    original_max_position_embeddings: 32,
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    rope_scaling: { type: 'longrope', short_factor: factors(8, 1, 1.2), long_factor: factors(8, 2, 7) },
    bos_token_id: 1,
    eos_token_id: [2, 32000],
  },
  llamaDynamic: {
    model_type: 'llama',
    ...TINY_SIZES,
    num_key_value_heads: 2,
    head_dim: 16,
    max_position_embeddings: 32,
    rope_scaling: { type: 'dynamic', factor: 2.0 },
    tie_word_embeddings: true,
  },
  llama3: {
    model_type: 'llama',
    ...TINY_SIZES,
    max_position_embeddings: 1024,
    rope_theta: 500000,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 128 },
  },
  qwen2Yarn: {
    model_type: 'qwen2',
    ...TINY_SIZES,
    num_key_value_heads: 1,
    max_position_embeddings: 1024,
    sliding_window: 64,
    use_sliding_window: false,
    rope_scaling: { type: 'yarn', factor: 4, original_max_position_embeddings: 256, beta_fast: 32, beta_slow: 1 },
  },
  mistralLinearParameters: {
    model_type: 'mistral',
    ...TINY_SIZES,
    max_position_embeddings: 512,
    rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 1e6, partial_rotary_factor: 0.5 },
  },
};

/** Every field the parser reads, at the top level and inside `rope_scaling` / `rope_parameters`. */
const TOP_FIELDS = [
  'model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'original_max_position_embeddings', 'rope_theta',
  'partial_rotary_factor', 'rms_norm_eps', 'tie_word_embeddings', 'attention_bias', 'mlp_bias', 'sliding_window',
  'use_sliding_window', 'bos_token_id', 'eos_token_id', 'torch_dtype', 'dtype', 'rope_scaling', 'rope_parameters',
  'rope_interleaved', 'short_mscale', 'long_mscale',
] as const;
const SCALING_FIELDS = [
  'type', 'rope_type', 'factor', 'short_factor', 'long_factor', 'original_max_position_embeddings', 'attention_factor',
  'beta_fast', 'beta_slow', 'low_freq_factor', 'high_freq_factor', 'short_mscale', 'long_mscale', 'interleaved',
  'rope_theta', 'partial_rotary_factor',
] as const;
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'] as const;

/** Numbers at every edge: NaN, infinities, signed zero, fractions, beyond 2^53, tiny, huge. */
const edgeNumber = fc.oneof(
  fc.constantFrom(NaN, Infinity, -Infinity, 0, -0, -1, 0.5, 1, 1.5, 2, 3, 7, 16, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE, Number.MIN_VALUE, 1e-300, 1e-45, 1e-40, 1e38, 3.5e38, 1e300, -1e300),
  fc.integer({ min: -5, max: 5000 }),
  fc.double({ noNaN: false }),
);
const edgeString = fc.oneof(
  fc.constantFrom('', ' ', 'phi3', 'llama', 'longrope', 'su', 'dynamic', 'yarn', 'llama3', 'linear', 'default', 'PHI3', '16', 'NaN', 'Infinity', '\u0000', '\ud800', 'é', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '__proto__'),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
);
/** A factor list: right or wrong length, with an occasional hostile entry. */
const factorList = fc.oneof(
  fc.array(fc.oneof(fc.double({ min: 0.5, max: 64, noNaN: true }), edgeNumber), { minLength: 0, maxLength: 40 }),
  fc.nat({ max: 40 }).chain((n) => fc.constant(factors(n, 1, 4))),
  fc.constantFrom(factors(8, 1, 4), factors(16, 1, 4), factors(4, 1, 4)),
);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: edgeNumber },
  { weight: 2, arbitrary: edgeString },
  { weight: 1, arbitrary: fc.constantFrom(null, true, false, [], {}, [1], { type: 'longrope' }) },
  { weight: 2, arbitrary: factorList },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constant(undefined) }, // deletes the field
);

/** `base` with some fields replaced, deleted, or added (prototype-polluting names included). */
const mutatedConfig = fc
  .record({
    base: fc.constantFrom(...Object.keys(BASES)),
    top: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...TOP_FIELDS), fc.constantFrom(...HOSTILE_KEYS)), hostileValue), { maxLength: 4 }),
    scaling: fc.array(fc.tuple(fc.oneof(fc.constantFrom(...SCALING_FIELDS), fc.constantFrom(...HOSTILE_KEYS)), hostileValue), { maxLength: 4 }),
    viaJson: fc.boolean(),
  })
  .map(({ base, top, scaling, viaJson }) => {
    const out: Record<string, unknown> = structuredClone(BASES[base]!);
    const scalingKey = Object.hasOwn(out, 'rope_parameters') ? 'rope_parameters' : 'rope_scaling';
    const inner: Record<string, unknown> = { ...((out[scalingKey] as Record<string, unknown> | undefined) ?? {}) };
    const apply = (obj: Record<string, unknown>, edits: [string, unknown][]) => {
      for (const [k, v] of edits) {
        // defineProperty: an own `__proto__` key, as JSON.parse makes, not a prototype change.
        if (v === undefined) delete obj[k];
        else Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
      }
    };
    apply(inner, scaling);
    if (Object.hasOwn(out, scalingKey) || scaling.length > 0) out[scalingKey] = inner;
    apply(out, top);
    // Through text too: what loadModelConfig sees (NaN/Infinity become null there, -0 becomes 0).
    return viaJson ? JSON.stringify(out) : out;
  });

// ---------------------------------------------------------------------------------------------
// The property

const isPosInt = (v: number) => Number.isSafeInteger(v) && v > 0;
const finitePositive = (v: number) => Number.isFinite(v) && v > 0;

/** What every module downstream assumes of a parsed config. */
function checkUsable(c: ModelConfig): void {
  for (const v of [c.vocabSize, c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.maxPositionEmbeddings]) {
    expect(isPosInt(v), `size ${v}`).toBe(true);
  }
  expect(c.numHeads % c.numKvHeads).toBe(0);
  expect(finitePositive(c.rmsNormEps)).toBe(true);
  const { rope } = c;
  expect(rope.rotaryDim % 2).toBe(0);
  expect(rope.rotaryDim).toBeGreaterThanOrEqual(2);
  expect(rope.rotaryDim).toBeLessThanOrEqual(c.headDim);
  expect(finitePositive(rope.theta)).toBe(true);
  for (const id of c.eosTokenIds) expect(Number.isSafeInteger(id) && id >= 0).toBe(true);
  const s = rope.scaling;
  if (s.type === 'longrope') {
    for (const list of [s.shortFactor, s.longFactor]) {
      expect(list).toHaveLength(rope.rotaryDim / 2);
      for (const f of list) expect(finitePositive(f)).toBe(true);
    }
  }
  // The schedule must build and every regime a forward can meet must rotate by finite angles.
  const schedule = createRopeSchedule(rope);
  const limit = positionLimit(c);
  expect(limit >= 1, `position limit ${limit}`).toBe(true);
  const threshold = schedule.threshold ?? 1;
  const lengths = [1, threshold, threshold + 1, threshold + 2, Math.min(limit, 2 ** 31 - 1)];
  for (const S of lengths) {
    const regime = schedule.regimeFor(S);
    expect(regime.invFreq).toHaveLength(rope.rotaryDim / 2);
    for (let i = 0; i < regime.invFreq.length; i++) {
      const ok = Number.isFinite(regime.invFreq[i]!) && regime.invFreq[i]! >= 0 && Number.isFinite(regime.invFreq64[i]!) && regime.invFreq64[i]! >= 0;
      if (!ok) throw new Error(`regime ${regime.id} at S = ${S}: inverse frequency ${i} is ${regime.invFreq[i]} (f64 ${regime.invFreq64[i]})`);
    }
    if (!(finitePositive(regime.attentionFactor) && finitePositive(regime.attentionFactor64))) {
      throw new Error(`regime ${regime.id} at S = ${S}: attention factor ${regime.attentionFactor64}`);
    }
  }
}

/** Parses `input`: either a usable config or a ConfigError; anything else fails the property. */
function parseOrConfigError(input: unknown): ModelConfig | ConfigError {
  let config: ModelConfig;
  try {
    config = parseModelConfig(input, 'fuzz/config.json');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError: ${String(err)}`, { cause: err });
    expect(err.message.startsWith('fuzz/config.json')).toBe(true);
    // Messages stay short even for huge values (describe() truncates).
    expect(err.message.length).toBeLessThan(600);
    return err;
  }
  checkUsable(config);
  return config;
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort();
const PROTOTYPE_KEYS = prototypeKeys();
const expectNoPollution = () => {
  expect(prototypeKeys()).toEqual(PROTOTYPE_KEYS);
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
};

describe('parseModelConfig under fuzzing: a usable config or a ConfigError, nothing else', () => {
  it.prop([mutatedConfig], params)('valid configs with fields replaced, deleted or added (hostile values and keys)', (input) => {
    parseOrConfigError(input);
    expectNoPollution();
  }, TIMEOUT);

  it.prop([fc.oneof(fc.string({ unit: 'binary' }), fc.json({ maxDepth: 4 }), fc.string({ unit: 'grapheme' }))], params)(
    'arbitrary text (binary, unicode, any JSON document)',
    (text) => {
      parseOrConfigError(text);
    },
    TIMEOUT,
  );

  it.prop([fc.anything({ withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, withNullPrototype: true, withObjectString: true })], params)(
    'arbitrary JavaScript values (bigints, boxed values, null-prototype objects, sparse arrays)',
    (value) => {
      parseOrConfigError(value);
    },
    TIMEOUT,
  );

  it.prop([fc.constantFrom(...Object.keys(BASES)), fc.nat({ max: TOP_FIELDS.length - 1 }), fc.oneof({ weight: 19, arbitrary: fc.integer({ min: 1, max: 2_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 50_000, max: 200_000 }) }), fc.constantFrom('[', '{"a":')], params)(
    'deeply nested JSON in any field (up to 200,000 levels)',
    (base, field, depth, open) => {
      const close = open === '[' ? ']' : '}';
      const nested = `${open.repeat(depth)}1${close.repeat(depth)}`;
      const text = JSON.stringify(BASES[base]).replace(/^\{/, `{"${TOP_FIELDS[field]}":${nested},`);
      parseOrConfigError(text);
    },
    TIMEOUT,
  );

  it.prop([fc.constantFrom(...Object.keys(BASES)), fc.string({ maxLength: 200 }), fc.nat(), fc.nat({ max: 3 })], params)(
    'valid config text with characters inserted, deleted or replaced',
    (base, chunk, at, how) => {
      const text = JSON.stringify(BASES[base]);
      const i = at % (text.length + 1);
      const mutated = how === 0 ? text.slice(0, i) + chunk + text.slice(i) : how === 1 ? text.slice(0, i) + text.slice(i + chunk.length + 1) : how === 2 ? text.slice(0, i) + chunk + text.slice(i + chunk.length) : text.slice(0, i);
      parseOrConfigError(mutated);
    },
    TIMEOUT,
  );

  it('prototype-polluting keys never reach Object.prototype nor stand in for missing fields', () => {
    for (const key of HOSTILE_KEYS) {
      const text = JSON.stringify(BASES['phi3Longrope']).replace(/^\{/, `{"${key}": {"polluted": true, "model_type": "llama", "vocab_size": 3},`);
      const c = parseOrConfigError(text);
      expect(c).not.toBeInstanceOf(ConfigError);
      expect((c as ModelConfig).modelType).toBe('phi3');
      expectNoPollution();
    }
    // Fields held only by a `__proto__` key are missing, not inherited.
    const hidden = `{"__proto__": ${JSON.stringify(BASES['phi3Longrope'])}}`;
    expect(parseOrConfigError(hidden)).toMatchObject({ code: 'missing-field', field: 'model_type' });
    expect(parseOrConfigError(JSON.parse(hidden))).toMatchObject({ code: 'missing-field', field: 'model_type' });
  });
});

describe('loadModelConfig under fuzzing: files of arbitrary bytes', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ropeswitch-config-fuzz-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.prop([fc.oneof(fc.uint8Array({ maxLength: 512 }), mutatedConfig.map((c) => new TextEncoder().encode(typeof c === 'string' ? c : JSON.stringify(c))))], params)(
    'a config.json of any bytes loads or fails with a ConfigError naming the path',
    async (bytes) => {
      await writeFile(join(dir, 'config.json'), bytes);
      try {
        checkUsable(await loadModelConfig(dir));
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError: ${String(err)}`, { cause: err });
        expect(err.message).toContain(join(dir, 'config.json'));
      }
    },
    TIMEOUT,
  );
});

/**
 * Inputs the fuzzer found that parsed before the fixes, yet broke later: a schedule with NaN or
 * infinite frequencies or attention factors (NaN logits at the first forward), or allocations sized
 * by one number of the config (a worker killed for memory while building the RoPE tables).
 */
describe('regressions found by fuzzing: rejected with a ConfigError naming the field', () => {
  const patched = (base: keyof typeof BASES, top: Record<string, unknown>, scaling: Record<string, unknown> = {}) => {
    const out: Record<string, unknown> = { ...structuredClone(BASES[base]!), ...top };
    const key = Object.hasOwn(out, 'rope_parameters') ? 'rope_parameters' : 'rope_scaling';
    if (Object.keys(scaling).length > 0) out[key] = { ...(out[key] as Record<string, unknown>), ...scaling };
    return out;
  };
  const cases: [string, Record<string, unknown>, string][] = [
    ['yarn factor 5e-324 (NaN frequencies)', patched('qwen2Yarn', {}, { factor: 5e-324 }), 'rope_scaling.factor'],
    ['yarn factor 0.5 (attention factor 0.93, below HF’s documented ≥ 1)', patched('qwen2Yarn', {}, { factor: 0.5 }), 'rope_scaling.factor'],
    ['dynamic factor 0.001 (position limit 0: no forward can run)', patched('llamaDynamic', {}, { factor: 0.001 }), 'rope_scaling.factor'],
    ['longrope long_mscale 1e-300 (float32 attention factor 0)', patched('phi3Longrope', {}, { long_mscale: 1e-300 }), 'rope_scaling.long_mscale'],
    ['longrope attention_factor 1e300 (float32 attention factor Infinity)', patched('phi3Longrope', {}, { attention_factor: 1e300 }), 'rope_scaling.attention_factor'],
    ['longrope long_factor entry 1e-40 (float32 reciprocal Infinity)', patched('phi3Longrope', {}, { long_factor: [1e-40, ...factors(7, 2, 7)] }), 'rope_scaling.long_factor[0]'],
    ['longrope original_max_position_embeddings 1 (attention factor divides by ln 1)', patched('phi3Longrope', { original_max_position_embeddings: 1 }), 'original_max_position_embeddings'],
    ['rope_theta 1e-300 (float32 base 0: infinite frequencies)', patched('llama3', { rope_theta: 1e-300 }), 'rope_theta'],
    ['rope_theta 1 with yarn (divides by ln 1: NaN frequencies)', patched('qwen2Yarn', { rope_theta: 1 }), 'rope_theta'],
    ['yarn beta_fast 5e-324 (seed 1379538142: L/(β·2π) overflows, ramp (i − ∞)/(high − ∞) NaN)', patched('qwen2Yarn', {}, { beta_fast: 5e-324 }), 'rope_scaling.beta_fast'],
    ['yarn beta_slow 1e308 (β·2π overflows, ln 0: HF raises; correction dim −∞)', patched('qwen2Yarn', {}, { beta_slow: 1e308 }), 'rope_scaling.beta_slow'],
    ['hidden_size 2^31 without head_dim (RoPE tables of 2^28 entries: out of memory)', patched('llama3', { hidden_size: 2 ** 31 }), 'hidden_size'],
    ['head_dim 2^40 (RangeError from a typed-array allocation)', patched('llamaDynamic', { head_dim: 2 ** 40 }), 'head_dim'],
  ];
  for (const [title, json, field] of cases) {
    it(title, () => {
      const err = parseOrConfigError(json);
      expect(err).toBeInstanceOf(ConfigError);
      expect(err).toMatchObject({ code: 'invalid-field', field });
    });
  }
});
