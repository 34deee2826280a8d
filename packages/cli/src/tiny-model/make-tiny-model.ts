import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TensorDtype, type TensorToWrite, parseModelConfig, writeSafetensors } from '@ropeswitch/core';
import { SeededRandom } from './seeded-random.js';

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

/**
 * Writes an HF-format folder (`config.json` + `model.safetensors`) of a tiny Phi-3 LongRoPE model
 * with seeded random weights: N(0, 0.25) projections (HF's 0.02 gives nearly flat logits) and
 * RMSNorm weights uniform in [0.5, 1.5], so an implementation that ignores them cannot pass.
 * The config is validated by the same parser that loads it.
 */
export async function makeTinyModel(outDir: string, options: TinyModelOptions = {}): Promise<void> {
  const json = tinyModelConfig(options);
  const config = parseModelConfig(json, join(outDir, 'config.json'));
  const rng = new SeededRandom(options.seed ?? 0);
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const dtype = DTYPES[options.dtype ?? 'f32'];
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], fill: () => number) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = fill();
    tensors.push({ name, dtype, shape, data });
  };
  const weight = () => rng.normal(0.25);
  const norm = () => rng.uniform(0.5, 1.5);
  add('model.embed_tokens.weight', [V, H], weight);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], norm);
    add(`${p}.self_attn.qkv_proj.weight`, [(numHeads + 2 * numKvHeads) * headDim, H], weight);
    add(`${p}.self_attn.o_proj.weight`, [H, numHeads * headDim], weight);
    add(`${p}.post_attention_layernorm.weight`, [H], norm);
    add(`${p}.mlp.gate_up_proj.weight`, [2 * I, H], weight);
    add(`${p}.mlp.down_proj.weight`, [H, I], weight);
  }
  add('model.norm.weight', [H], norm);
  add('lm_head.weight', [V, H], weight);
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'config.json'), `${JSON.stringify(json, null, 2)}\n`);
  await writeSafetensors(join(outDir, 'model.safetensors'), tensors, { format: 'pt' });
}
