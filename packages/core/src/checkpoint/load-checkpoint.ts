import { loadModelConfig } from '../config/load-config.js';
import type { ModelConfig } from '../config/model-config.js';
import { loadWeights } from '../weights/weight-store.js';
import type { WeightStore } from '../weights/weight-store.js';

/** An HF model folder: its parsed `config.json` and its (possibly sharded) safetensors weights. */
export interface Checkpoint {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly weights: WeightStore;
}

/** Reads `<dir>/config.json` and opens `<dir>/model.safetensors` (or its sharded index). */
export async function loadCheckpoint(dir: string): Promise<Checkpoint> {
  const config = await loadModelConfig(dir);
  const weights = await loadWeights(dir);
  return { dir, config, weights };
}
