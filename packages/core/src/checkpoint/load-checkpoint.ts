import { loadModelConfig } from '../config/load-config.js';
import type { ModelConfig } from '../config/model-config.js';
import { loadTokenizer } from '../tokenizer/load-tokenizer.js';
import type { TextTokenizer } from '../tokenizer/text-tokenizer.js';
import { type LoadWeightsOptions, loadWeights } from '../weights/load-weights.js';
import type { WeightStore } from '../weights/weight-store.js';

/** An HF model folder: its parsed `config.json`, its (possibly sharded) safetensors weights and its tokenizer, if any. */
export interface Checkpoint {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly weights: WeightStore;
  /** From `<dir>/tokenizer.json`; absent when the folder has none (prompts are then token ids). */
  readonly tokenizer?: TextTokenizer;
}

/** Options of {@link loadCheckpoint}. */
export type LoadCheckpointOptions = LoadWeightsOptions;

/**
 * Reads `<dir>/config.json`, opens `<dir>/model.safetensors` (or its sharded index) and loads
 * `<dir>/tokenizer.json` when present (a folder without one is fine: prompts are then token ids).
 * Weights are read lazily, tensor by tensor, by whoever converts them (a backend as it opens);
 * `onProgress` follows those reads.
 */
export async function loadCheckpoint(dir: string, options: LoadCheckpointOptions = {}): Promise<Checkpoint> {
  const config = await loadModelConfig(dir);
  const tokenizer = await loadTokenizer(dir);
  // Weights last: they hold open files, which a failed tokenizer load would leak.
  const weights = await loadWeights(dir, options);
  return { dir, config, weights, ...(tokenizer ? { tokenizer } : {}) };
}
