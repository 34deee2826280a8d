import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ModelConfig, SeededRandom, type TensorDtype, type TensorToWrite, parseModelConfig, writeSafetensors } from '@ropeswitch/core';

/**
 * The HF state dict of a random decoder for `config`: Phi-3 fused or Llama split projections,
 * biases and `lm_head` as the config asks. Projections ~ N(0, 0.25²) (HF's 0.02 gives nearly flat
 * logits), RMSNorm weights ~ U(0.5, 1.5), so an implementation that ignores them cannot pass.
 */
export function randomCheckpointTensors(config: ModelConfig, seed: number, dtype: TensorDtype = 'F32'): TensorToWrite[] {
  const rng = new SeededRandom(seed);
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const tensors: TensorToWrite[] = [];
  const add = (name: string, shape: number[], fill: () => number) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = fill();
    tensors.push({ name, dtype, shape, data });
  };
  const matrix = (name: string, shape: number[]) => add(name, shape, () => rng.normal(0.25));
  const norm = (name: string) => add(name, [H], () => rng.uniform(0.5, 1.5));
  const split = config.family !== 'phi3';

  matrix('model.embed_tokens.weight', [V, H]);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`);
    if (split) {
      matrix(`${p}.self_attn.q_proj.weight`, [qDim, H]);
      matrix(`${p}.self_attn.k_proj.weight`, [kvDim, H]);
      matrix(`${p}.self_attn.v_proj.weight`, [kvDim, H]);
    } else {
      matrix(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H]);
    }
    if (config.attentionBias) {
      matrix(`${p}.self_attn.q_proj.bias`, [qDim]);
      matrix(`${p}.self_attn.k_proj.bias`, [kvDim]);
      matrix(`${p}.self_attn.v_proj.bias`, [kvDim]);
    }
    matrix(`${p}.self_attn.o_proj.weight`, [H, qDim]);
    norm(`${p}.post_attention_layernorm.weight`);
    if (split) {
      matrix(`${p}.mlp.gate_proj.weight`, [I, H]);
      matrix(`${p}.mlp.up_proj.weight`, [I, H]);
      if (config.mlpBias) {
        matrix(`${p}.mlp.gate_proj.bias`, [I]);
        matrix(`${p}.mlp.up_proj.bias`, [I]);
      }
    } else {
      matrix(`${p}.mlp.gate_up_proj.weight`, [2 * I, H]);
    }
    matrix(`${p}.mlp.down_proj.weight`, [H, I]);
    if (split && config.mlpBias) matrix(`${p}.mlp.down_proj.bias`, [H]);
  }
  norm('model.norm.weight');
  if (!config.tieWordEmbeddings) matrix('lm_head.weight', [V, H]);
  return tensors;
}

export interface RandomCheckpointOptions {
  readonly seed?: number;
  readonly dtype?: TensorDtype;
  /** Rewrites the tensor list before it is written (tests drop or reshape one to exercise loader errors). */
  readonly edit?: (tensors: TensorToWrite[]) => TensorToWrite[];
}

/**
 * Writes an HF-format folder (`config.json` + `model.safetensors`) for `configJson` with seeded
 * random weights. The config is validated by the parser that will load it; returns it parsed.
 */
export async function writeRandomCheckpoint(
  dir: string,
  configJson: Record<string, unknown>,
  options: RandomCheckpointOptions = {},
): Promise<ModelConfig> {
  const config = parseModelConfig(configJson, join(dir, 'config.json'));
  let tensors = randomCheckpointTensors(config, options.seed ?? 0, options.dtype);
  if (options.edit) tensors = options.edit(tensors);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), `${JSON.stringify(configJson, null, 2)}\n`);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return config;
}
