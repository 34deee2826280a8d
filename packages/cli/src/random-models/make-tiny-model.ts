import { SeededRandom, type TensorDtype } from '@ropeswitch/core';
import { writeRandomCheckpoint } from './random-checkpoint.js';

/** The shape of a tiny Phi-3 LongRoPE model; every field has a default. */
export interface TinyModelOptions {
  readonly seed?: number;
  /** L, the LongRoPE threshold (default 4096, Phi-3's). */
  readonly originalMax?: number;
  /** M (default 131072, Phi-3's). */
  readonly maxPositions?: number;
  readonly layers?: number;
  readonly hidden?: number;
  readonly heads?: number;
  readonly kvHeads?: number;
  readonly vocab?: number;
  /** Intermediate MLP size (default 2 × hidden). */
  readonly intermediate?: number;
  readonly dtype?: 'f32' | 'f16' | 'bf16';
}

const DTYPES: Record<NonNullable<TinyModelOptions['dtype']>, TensorDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/**
 * The HF `config.json` of a tiny Phi-3 model with seeded, non-trivial LongRoPE factors: short
 * factors rising from 1 to ~1.3, long factors rising from ~1.5 to ~8 (the shape of Phi-3-mini's).
 */
export function tinyModelConfig(options: TinyModelOptions = {}): Record<string, unknown> {
  const hidden = options.hidden ?? 64;
  const heads = options.heads ?? 4;
  const headDim = hidden / heads;
  const rng = new SeededRandom((options.seed ?? 0) ^ 0x5eed);
  const half = headDim / 2;
  const rising = (lo: number, hi: number) =>
    Array.from({ length: half }, (_, i) => Number((lo + ((hi - lo) * i) / Math.max(1, half - 1) + rng.uniform(0, 0.05)).toFixed(4)));
  const short = rising(1, 1.3);
  short[0] = 1;
  return {
    architectures: ['Phi3ForCausalLM'],
    model_type: 'phi3',
    vocab_size: options.vocab ?? 128,
    hidden_size: hidden,
    intermediate_size: options.intermediate ?? 2 * hidden,
    num_hidden_layers: options.layers ?? 2,
    num_attention_heads: heads,
    num_key_value_heads: options.kvHeads ?? (heads % 2 === 0 ? heads / 2 : heads),
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    max_position_embeddings: options.maxPositions ?? 131072,
    original_max_position_embeddings: options.originalMax ?? 4096,
    rope_scaling: { type: 'longrope', short_factor: short, long_factor: rising(1.5, 8) },
    tie_word_embeddings: false,
    bos_token_id: null,
    eos_token_id: null,
    torch_dtype: options.dtype === 'bf16' ? 'bfloat16' : options.dtype === 'f16' ? 'float16' : 'float32',
  };
}

/** Writes a tiny Phi-3 LongRoPE model (HF format, seeded random weights) into `outDir`. */
export async function makeTinyModel(outDir: string, options: TinyModelOptions = {}): Promise<void> {
  await writeRandomCheckpoint(outDir, tinyModelConfig(options), { seed: options.seed ?? 0, dtype: DTYPES[options.dtype ?? 'f32'] });
}
