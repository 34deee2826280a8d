import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decoderTensors } from './decoder-tensors.js';
import { type ModelConfig, SeededRandom, type TensorDtype, type TensorToWrite, parseModelConfig, writeSafetensors } from '@ropeswitch/core';

/**
 * The HF state dict of a random decoder for `config`: Phi-3 fused or Llama split projections,
 * biases and `lm_head` as the config asks. Projections ~ N(0, 0.25²) (HF's 0.02 gives nearly flat
 * logits), RMSNorm weights ~ U(0.5, 1.5), so an implementation that ignores them cannot pass.
 * Held in memory: for tiny models (`make-model` streams the large ones).
 */
export function randomCheckpointTensors(config: ModelConfig, seed: number, dtype: TensorDtype = 'F32'): TensorToWrite[] {
  const rng = new SeededRandom(seed);
  return decoderTensors(config).map(({ name, shape, role }) => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (role === 'norm') for (let i = 0; i < data.length; i++) data[i] = rng.uniform(0.5, 1.5);
    else for (let i = 0; i < data.length; i++) data[i] = rng.normal(0.25);
    return { name, dtype, shape, data };
  });
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
