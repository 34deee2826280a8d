import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ModelConfig, type TensorToWrite, parseModelConfig, writeSafetensors } from '@ropeswitch/core';

/** mulberry32: a tiny seeded PRNG (uniform in [0, 1)). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples from a uniform PRNG (Box–Muller). */
function gaussian(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
}

/**
 * The HF state dict of a random decoder for `config` (Phi-3 fused or Llama split layout, biases
 * and `lm_head` as the config asks): matrices and biases ~ N(0, 0.25²), norm weights ~ U(0.5, 1.5).
 */
export function tinyModelTensors(config: ModelConfig, seed: number): TensorToWrite[] {
  const rand = mulberry32(seed);
  const normal = gaussian(rand);
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const tensors: TensorToWrite[] = [];
  const matrix = (name: string, shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.push({ name, dtype: 'F32', shape, data: Float32Array.from({ length: n }, () => 0.25 * normal()) });
  };
  const normWeight = (name: string) => {
    tensors.push({ name, dtype: 'F32', shape: [H], data: Float32Array.from({ length: H }, () => 0.5 + rand()) });
  };

  matrix('model.embed_tokens.weight', [V, H]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    normWeight(`${p}.input_layernorm.weight`);
    if (config.family === 'phi3') {
      matrix(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H]);
    } else {
      matrix(`${p}.self_attn.q_proj.weight`, [qDim, H]);
      matrix(`${p}.self_attn.k_proj.weight`, [kvDim, H]);
      matrix(`${p}.self_attn.v_proj.weight`, [kvDim, H]);
    }
    if (config.attentionBias) {
      matrix(`${p}.self_attn.q_proj.bias`, [qDim]);
      matrix(`${p}.self_attn.k_proj.bias`, [kvDim]);
      matrix(`${p}.self_attn.v_proj.bias`, [kvDim]);
    }
    matrix(`${p}.self_attn.o_proj.weight`, [H, qDim]);
    normWeight(`${p}.post_attention_layernorm.weight`);
    if (config.family === 'phi3') {
      matrix(`${p}.mlp.gate_up_proj.weight`, [2 * I, H]);
    } else {
      matrix(`${p}.mlp.gate_proj.weight`, [I, H]);
      matrix(`${p}.mlp.up_proj.weight`, [I, H]);
      if (config.mlpBias) {
        matrix(`${p}.mlp.gate_proj.bias`, [I]);
        matrix(`${p}.mlp.up_proj.bias`, [I]);
      }
    }
    matrix(`${p}.mlp.down_proj.weight`, [H, I]);
    if (config.family !== 'phi3' && config.mlpBias) matrix(`${p}.mlp.down_proj.bias`, [H]);
  }
  normWeight('model.norm.weight');
  if (!config.tieWordEmbeddings) matrix('lm_head.weight', [V, H]);
  return tensors;
}

/**
 * Writes `config.json` and a seeded random `model.safetensors` for `configJson` into `dir` (which
 * must exist). `edit` may rewrite the tensor list first (drop or reshape one to test loader errors).
 * Returns the parsed config.
 */
export async function writeTinyModel(
  dir: string,
  configJson: Record<string, unknown>,
  seed: number,
  edit?: (tensors: TensorToWrite[]) => TensorToWrite[],
): Promise<ModelConfig> {
  const config = parseModelConfig(configJson);
  let tensors = tinyModelTensors(config, seed);
  if (edit) tensors = edit(tensors);
  await writeFile(join(dir, 'config.json'), JSON.stringify(configJson, null, 2));
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return config;
}
