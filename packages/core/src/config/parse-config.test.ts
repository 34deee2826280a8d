import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { loadModelConfig } from './load-config.js';
import type { RopeScaling } from './model-config.js';
import { parseModelConfig } from './parse-config.js';
import { TINY_LLAMA } from '@ropeswitch/testkit';

// Copies of ../shared/fixtures configs (trimmed of fields the parser ignores), so the tests run without them.
const SEED1_GQA = {
  architectures: ['Phi3ForCausalLM'],
  bos_token_id: null,
  eos_token_id: null,
  hidden_act: 'silu',
  hidden_size: 64,
  intermediate_size: 128,
  max_position_embeddings: 256,
  model_type: 'phi3',
  num_attention_heads: 4,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  original_max_position_embeddings: 32,
  pad_token_id: null,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    long_factor: [2.1971, 2.3413, 3.5316, 5.2791, 6.0871, 6.2306, 6.4507, 7.1481],
    short_factor: [1.0, 1.1268, 1.1404, 1.1467, 1.1583, 1.167, 1.1904, 1.212],
    type: 'longrope',
  },
  rope_theta: 10000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  transformers_version: '4.45.0',
  use_cache: true,
  vocab_size: 128,
};

const SEED4_LLAMA_DYNAMIC = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: null,
  eos_token_id: null,
  head_dim: 16,
  hidden_act: 'silu',
  hidden_size: 64,
  intermediate_size: 128,
  max_position_embeddings: 32,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 4,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 2.0, type: 'dynamic' },
  rope_theta: 10000.0,
  tie_word_embeddings: true,
  torch_dtype: 'float32',
  transformers_version: '4.45.0',
  use_cache: true,
  vocab_size: 128,
};

const TRAINED_COPY_LONGROPE = {
  architectures: ['Phi3ForCausalLM'],
  bos_token_id: 0,
  eos_token_id: 2,
  hidden_size: 128,
  intermediate_size: 256,
  max_position_embeddings: 256,
  model_type: 'phi3',
  num_attention_heads: 4,
  num_hidden_layers: 4,
  num_key_value_heads: 2,
  original_max_position_embeddings: 64,
  pad_token_id: null,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    long_factor: [
      1.0, 1.0516, 1.1461, 1.2683, 1.4131, 1.5774, 1.7589, 1.9564, 2.1685, 2.3943, 2.633, 2.884, 3.1466, 3.4205,
      3.7051, 4.0,
    ],
    short_factor: [
      1.0, 1.0133, 1.0267, 1.04, 1.0533, 1.0667, 1.08, 1.0933, 1.1067, 1.12, 1.1333, 1.1467, 1.16, 1.1733, 1.1867,
      1.2,
    ],
    type: 'longrope',
  },
  rope_theta: 10000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  vocab_size: 52,
};

/** A minimal valid llama config (head_dim 16) with `patch` applied; `undefined` values delete keys. */
function llama(patch: Record<string, unknown> = {}): Record<string, unknown> {
  return withPatch(TINY_LLAMA, patch);
}

function withPatch(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base, ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete out[k];
  return out;
}

const scalingOf = (json: unknown): RopeScaling => parseModelConfig(json).rope.scaling;

/** Asserts `fn` throws a ConfigError blaming `field` (and naming it in the message); returns it for more checks. */
function expectConfigError(fn: () => unknown, code: string, field: string | undefined): ConfigError {
  expect(fn).toThrow(ConfigError);
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  const err = caught as ConfigError;
  expect(err.code).toBe(code);
  expect(err.field).toBe(field);
  if (field !== undefined) expect(err.message).toContain(field);
  return err;
}

describe('parseModelConfig: fixture configs', () => {
  it('parses seed1-gqa (phi3, longrope)', () => {
    const c = parseModelConfig(SEED1_GQA);
    expect(c).toMatchObject({
      modelType: 'phi3',
      family: 'phi3',
      vocabSize: 128,
      hiddenSize: 64,
      intermediateSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 16,
      rmsNormEps: 1e-5,
      maxPositionEmbeddings: 256,
      originalMaxPositionEmbeddings: 32,
      tieWordEmbeddings: false,
      attentionBias: false,
      mlpBias: false,
      slidingWindow: undefined,
      bosTokenId: undefined,
      eosTokenIds: [],
      torchDtype: 'float32',
    });
    expect(c.rope).toMatchObject({ theta: 10000, partialRotaryFactor: 1, rotaryDim: 16, pairing: 'rotate-half' });
    const s = c.rope.scaling;
    if (s.type !== 'longrope') throw new Error(`expected longrope, got ${s.type}`);
    expect(s.shortFactor).toHaveLength(8);
    expect(s.longFactor).toEqual(SEED1_GQA.rope_scaling.long_factor);
    expect(s).toMatchObject({
      originalMaxPositionEmbeddings: 32,
      maxPositionEmbeddings: 256,
      attentionFactor: undefined,
      factor: undefined,
      shortMscale: undefined,
      longMscale: undefined,
    });
  });

  it('parses seed4-llama-dynamic', () => {
    const c = parseModelConfig(SEED4_LLAMA_DYNAMIC);
    expect(c).toMatchObject({ family: 'llama', tieWordEmbeddings: true, headDim: 16, numKvHeads: 2 });
    expect(c.rope.scaling).toEqual({ type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 32 });
  });

  it('parses the trained copy-longrope config (rotary dim 32, token ids)', () => {
    const c = parseModelConfig(TRAINED_COPY_LONGROPE);
    expect(c.headDim).toBe(32);
    expect(c.rope.rotaryDim).toBe(32);
    expect(c.bosTokenId).toBe(0);
    expect(c.eosTokenIds).toEqual([2]);
    expect(c.rope.scaling).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 64, maxPositionEmbeddings: 256 });
  });

  it('accepts the JSON text as well as the parsed value, and returns a frozen object', () => {
    const c = parseModelConfig(JSON.stringify(SEED1_GQA), 'seed1/config.json');
    expect(c).toEqual(parseModelConfig(SEED1_GQA));
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.rope.scaling)).toBe(true);
  });
});

describe('parseModelConfig: RoPE forms', () => {
  it('defaults to plain RoPE with theta 10000 when rope_scaling is absent or null', () => {
    expect(parseModelConfig(llama()).rope).toEqual({
      theta: 10000,
      partialRotaryFactor: 1,
      rotaryDim: 16,
      pairing: 'rotate-half',
      scaling: { type: 'default' },
    });
    expect(scalingOf(llama({ rope_scaling: null }))).toEqual({ type: 'default' });
  });

  it('reads rope_parameters, whose rope_theta and partial_rotary_factor override the top-level ones', () => {
    const c = parseModelConfig(
      llama({
        rope_theta: 10000,
        partial_rotary_factor: 1,
        rope_parameters: { rope_type: 'linear', factor: 4, rope_theta: 500000, partial_rotary_factor: 0.5 },
      }),
    );
    expect(c.rope).toMatchObject({ theta: 500000, partialRotaryFactor: 0.5, rotaryDim: 8, scaling: { type: 'linear', factor: 4 } });
    // A type-less rope_parameters is plain RoPE (newer HF always writes the object).
    expect(parseModelConfig(llama({ rope_parameters: { rope_theta: 1e6 } })).rope).toMatchObject({
      theta: 1e6,
      scaling: { type: 'default' },
    });
  });

  it('reads longrope from rope_parameters with L inside it', () => {
    const s = scalingOf(
      llama({
        rope_parameters: {
          rope_type: 'longrope',
          short_factor: [1, 1, 1, 1, 1, 1, 1, 1],
          long_factor: [2, 2, 2, 2, 2, 2, 2, 2],
          original_max_position_embeddings: 64,
        },
      }),
    );
    expect(s).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 64, maxPositionEmbeddings: 256 });
  });

  it("parses the legacy 'su' type as longrope", () => {
    const c = parseModelConfig({ ...SEED1_GQA, rope_scaling: { ...SEED1_GQA.rope_scaling, type: 'su' } });
    expect(c.rope.scaling.type).toBe('longrope');
  });

  it('prefers rope_type over type', () => {
    expect(scalingOf(llama({ rope_scaling: { type: 'dynamic', rope_type: 'linear', factor: 2 } }))).toEqual({
      type: 'linear',
      factor: 2,
    });
  });

  it('handles partial_rotary_factor 0.75 with an explicit head_dim', () => {
    const c = parseModelConfig(
      llama({
        head_dim: 32,
        partial_rotary_factor: 0.75,
        rope_scaling: { type: 'longrope', short_factor: Array(12).fill(1), long_factor: Array(12).fill(3) },
        original_max_position_embeddings: 64,
      }),
    );
    expect(c.headDim).toBe(32);
    expect(c.rope).toMatchObject({ partialRotaryFactor: 0.75, rotaryDim: 24 });
    expect(c.rope.scaling).toMatchObject({ type: 'longrope', originalMaxPositionEmbeddings: 64 });
  });

  it('selects interleaved pairing from rope_interleaved or rope_scaling.interleaved', () => {
    expect(parseModelConfig(llama({ rope_interleaved: true })).rope.pairing).toBe('interleaved');
    expect(parseModelConfig(llama({ rope_scaling: { type: 'linear', factor: 2, interleaved: true } })).rope.pairing).toBe(
      'interleaved',
    );
  });

  it('parses linear', () => {
    expect(scalingOf(llama({ rope_scaling: { type: 'linear', factor: 8 } }))).toEqual({ type: 'linear', factor: 8 });
  });

  it('parses dynamic, taking the original length from rope_scaling, then the top level, then max_position_embeddings', () => {
    const dyn = (extra: Record<string, unknown>) => scalingOf(llama({ rope_scaling: { type: 'dynamic', factor: 2 }, ...extra }));
    expect(dyn({})).toMatchObject({ originalMaxPositionEmbeddings: 256 });
    expect(dyn({ original_max_position_embeddings: 64 })).toMatchObject({ originalMaxPositionEmbeddings: 64 });
    expect(
      scalingOf(
        llama({ original_max_position_embeddings: 64, rope_scaling: { type: 'dynamic', factor: 2, original_max_position_embeddings: 16 } }),
      ),
    ).toMatchObject({ originalMaxPositionEmbeddings: 16 });
  });

  it('parses yarn with HF defaults and explicit values', () => {
    expect(scalingOf(llama({ rope_scaling: { type: 'yarn', factor: 4 } }))).toEqual({
      type: 'yarn',
      factor: 4,
      originalMaxPositionEmbeddings: 256,
      attentionFactor: undefined,
      betaFast: 32,
      betaSlow: 1,
    });
    expect(
      scalingOf(
        llama({
          rope_scaling: {
            rope_type: 'yarn',
            factor: 4,
            original_max_position_embeddings: 64,
            attention_factor: 1.2,
            beta_fast: 16,
            beta_slow: 2,
          },
        }),
      ),
    ).toEqual({ type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64, attentionFactor: 1.2, betaFast: 16, betaSlow: 2 });
  });

  it('parses llama3', () => {
    const s = scalingOf(
      llama({
        rope_scaling: {
          rope_type: 'llama3',
          factor: 8,
          low_freq_factor: 1,
          high_freq_factor: 4,
          original_max_position_embeddings: 8192,
        },
      }),
    );
    expect(s).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  });

  it('parses longrope extras: attention_factor, factor, and mscales inside or at the top level', () => {
    const base = { ...SEED1_GQA.rope_scaling, attention_factor: 1.19, factor: 8, short_mscale: 1.1 };
    expect(scalingOf({ ...SEED1_GQA, rope_scaling: base, long_mscale: 1.3 })).toMatchObject({
      attentionFactor: 1.19,
      factor: 8,
      shortMscale: 1.1,
      longMscale: 1.3,
    });
  });
});

describe('parseModelConfig: model types', () => {
  it('qwen2 always has attention biases, and a sliding window only when use_sliding_window is set', () => {
    const qwen = llama({ model_type: 'qwen2', sliding_window: 4096, use_sliding_window: false, attention_bias: false });
    const c = parseModelConfig(qwen);
    expect(c).toMatchObject({ family: 'llama', attentionBias: true, slidingWindow: undefined });
    expect(parseModelConfig({ ...qwen, use_sliding_window: true }).slidingWindow).toBe(4096);
  });

  it('mistral is llama-family with its sliding window', () => {
    const c = parseModelConfig(llama({ model_type: 'mistral', sliding_window: 4096, eos_token_id: [2, 3], bos_token_id: 1 }));
    expect(c).toMatchObject({ modelType: 'mistral', family: 'llama', attentionBias: false, slidingWindow: 4096 });
    expect(c.eosTokenIds).toEqual([2, 3]);
    expect(c.bosTokenId).toBe(1);
  });

  it('llama honours attention_bias and mlp_bias; defaults apply when fields are absent', () => {
    const c = parseModelConfig(llama({ attention_bias: true, mlp_bias: true, num_key_value_heads: undefined }));
    expect(c).toMatchObject({ attentionBias: true, mlpBias: true, numKvHeads: 4, rmsNormEps: 1e-6, tieWordEmbeddings: false });
  });
});

describe('parseModelConfig: bad input', () => {
  it('rejects malformed JSON text, naming the source', () => {
    const err = expectConfigError(() => parseModelConfig('{"model_type": "llama",', 'models/x/config.json'), 'malformed-json', undefined);
    expect(err.message).toContain('models/x/config.json');
  });

  it.each([null, 42, 'null', [], [SEED1_GQA], true])('rejects a non-object top level (%j)', (value) => {
    const err = expectConfigError(() => parseModelConfig(value), 'invalid-field', undefined);
    expect(err.message).toContain('expected a JSON object');
  });

  it('rejects a missing required field', () => {
    const err = expectConfigError(() => parseModelConfig(llama({ hidden_size: undefined })), 'missing-field', 'hidden_size');
    expect(err.message).toContain('positive integer');
    expectConfigError(() => parseModelConfig(llama({ model_type: undefined })), 'missing-field', 'model_type');
    expectConfigError(() => parseModelConfig(llama({ vocab_size: null })), 'missing-field', 'vocab_size');
  });

  it.each([
    ['num_hidden_layers', '2'],
    ['num_hidden_layers', true],
    ['num_hidden_layers', 2.5],
    ['num_hidden_layers', -2],
    ['vocab_size', 1e308],
    ['rms_norm_eps', 'tiny'],
    ['rms_norm_eps', -1e-5],
    ['tie_word_embeddings', 'yes'],
    ['eos_token_id', 'eos'],
    ['rope_scaling', [1, 2]],
    ['rope_theta', Number.POSITIVE_INFINITY],
  ])('rejects a wrong-typed %s (%j)', (field, value) => {
    const err = expectConfigError(() => parseModelConfig(llama({ [field]: value })), 'invalid-field', field);
    expect(err.message).toMatch(/expected/);
  });

  it('names the entry of a bad token-id list', () => {
    expectConfigError(() => parseModelConfig(llama({ eos_token_id: [2, -1] })), 'invalid-field', 'eos_token_id[1]');
  });

  it('rejects a factor list of the wrong length with the expected count', () => {
    const cfg = { ...SEED1_GQA, rope_scaling: { ...SEED1_GQA.rope_scaling, long_factor: [1, 2, 3, 4, 5, 6, 7] } };
    const err = expectConfigError(() => parseModelConfig(cfg, 'config.json'), 'invalid-field', 'rope_scaling.long_factor');
    expect(err.message).toBe('config.json: rope_scaling.long_factor has 7 entries, expected 8 (rotary_dim/2 = 16/2)');
  });

  it.each([Number.NaN, -1.5, 0, Number.POSITIVE_INFINITY, '1.0', null])('rejects a factor entry %j', (bad) => {
    const longFactor = [...SEED1_GQA.rope_scaling.long_factor];
    (longFactor as unknown[])[3] = bad;
    const cfg = { ...SEED1_GQA, rope_scaling: { ...SEED1_GQA.rope_scaling, long_factor: longFactor } };
    const err = expectConfigError(() => parseModelConfig(cfg), 'invalid-field', 'rope_scaling.long_factor[3]');
    expect(err.message).toContain('positive finite number');
  });

  it.each([Number.NaN, -2, Number.POSITIVE_INFINITY, 0])('rejects a scaling factor %j', (bad) => {
    expectConfigError(
      () => parseModelConfig(llama({ rope_scaling: { type: 'linear', factor: bad } })),
      'invalid-field',
      'rope_scaling.factor',
    );
  });

  it('requires the factor of linear / dynamic / yarn and the llama3 parameters', () => {
    expectConfigError(() => parseModelConfig(llama({ rope_scaling: { type: 'dynamic' } })), 'missing-field', 'rope_scaling.factor');
    expectConfigError(() => parseModelConfig(llama({ rope_scaling: { type: 'yarn' } })), 'missing-field', 'rope_scaling.factor');
    const l3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 };
    expectConfigError(() => parseModelConfig(llama({ rope_scaling: l3 })), 'invalid-field', 'rope_scaling.high_freq_factor');
    expectConfigError(
      () => parseModelConfig(llama({ rope_scaling: { ...l3, high_freq_factor: 8, original_max_position_embeddings: undefined } })),
      'missing-field',
      'rope_scaling.original_max_position_embeddings',
    );
  });

  it('requires the longrope threshold somewhere', () => {
    const cfg = { ...SEED1_GQA, original_max_position_embeddings: undefined };
    expectConfigError(() => parseModelConfig(cfg), 'missing-field', 'rope_scaling.original_max_position_embeddings');
  });

  it('rejects an unknown rope type, listing the known ones', () => {
    const err = expectConfigError(
      () => parseModelConfig(llama({ rope_scaling: { type: 'ntk-by-parts', factor: 2 } })),
      'unknown-rope-type',
      'rope_scaling.type',
    );
    for (const t of ['default', 'linear', 'dynamic', 'yarn', 'llama3', 'longrope', 'su']) expect(err.message).toContain(t);
    expectConfigError(() => parseModelConfig(llama({ rope_scaling: { factor: 2 } })), 'missing-field', 'rope_scaling.type');
    expectConfigError(() => parseModelConfig(llama({ rope_scaling: { type: 7 } })), 'invalid-field', 'rope_scaling.type');
  });

  it('rejects an unsupported model_type, listing the supported ones', () => {
    const err = expectConfigError(() => parseModelConfig(llama({ model_type: 'gpt2' })), 'unsupported-model', 'model_type');
    for (const t of ['phi3', 'llama', 'mistral', 'qwen2']) expect(err.message).toContain(t);
    // Inherited names must not count as supported.
    expectConfigError(() => parseModelConfig(llama({ model_type: 'toString' })), 'unsupported-model', 'model_type');
  });

  it('rejects head counts that do not divide', () => {
    expectConfigError(() => parseModelConfig(llama({ num_key_value_heads: 3 })), 'invalid-field', 'num_key_value_heads');
    expectConfigError(
      () => parseModelConfig(llama({ num_attention_heads: 5, num_key_value_heads: 5 })),
      'invalid-field',
      'num_attention_heads',
    );
  });

  it('rejects a partial_rotary_factor outside (0, 1] or giving an odd rotary dim', () => {
    for (const prf of [0, 1.5, -0.5, Number.NaN]) {
      expectConfigError(() => parseModelConfig(llama({ partial_rotary_factor: prf })), 'invalid-field', 'partial_rotary_factor');
    }
    // floor(16 × 0.3) = 4 is fine; floor(16 × 0.2) = 3 is odd.
    expect(parseModelConfig(llama({ partial_rotary_factor: 0.3 })).rope.rotaryDim).toBe(4);
    expectConfigError(() => parseModelConfig(llama({ partial_rotary_factor: 0.2 })), 'invalid-field', 'partial_rotary_factor');
    expectConfigError(
      () => parseModelConfig(llama({ rope_parameters: { rope_type: 'default', partial_rotary_factor: 2 } })),
      'invalid-field',
      'rope_parameters.partial_rotary_factor',
    );
    expectConfigError(() => parseModelConfig(llama({ head_dim: 7 })), 'invalid-field', 'head_dim');
  });

  it('throws only ConfigError for odd JSON values', () => {
    const odd: unknown[] = [
      undefined,
      '',
      '[]',
      '{"__proto__": {"model_type": "llama"}}',
      llama({ rope_scaling: 'longrope' }),
      llama({ rope_parameters: [] }),
      llama({ rope_scaling: { type: 'longrope', short_factor: { length: 1e12 }, long_factor: [] } }),
      llama({ eos_token_id: { length: 1e12 } }),
      llama({ model_type: { toString: 1 } }),
      llama({ torch_dtype: 16 }),
      { ...SEED1_GQA, rope_scaling: { ...SEED1_GQA.rope_scaling, long_factor: [[1], {}, null, 1, 1, 1, 1, 1] } },
    ];
    for (const value of odd) expect(() => parseModelConfig(value)).toThrow(ConfigError);
  });
});

describe('loadModelConfig', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ropeswitch-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads <dir>/config.json', async () => {
    await writeFile(join(dir, 'config.json'), JSON.stringify(SEED4_LLAMA_DYNAMIC));
    const c = await loadModelConfig(dir);
    expect(c.rope.scaling).toEqual({ type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 32 });
  });

  it('names the file path in parse errors', async () => {
    const sub = await mkdtemp(join(dir, 'bad-'));
    await writeFile(join(sub, 'config.json'), '{ not json');
    const err: unknown = await loadModelConfig(sub).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('malformed-json');
    expect((err as ConfigError).message).toContain(join(sub, 'config.json'));
  });

  it("reports a missing file as 'unreadable' with its path", async () => {
    const missing = join(dir, 'nope');
    const err: unknown = await loadModelConfig(missing).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('unreadable');
    expect((err as ConfigError).message).toContain(join(missing, 'config.json'));
  });
});
