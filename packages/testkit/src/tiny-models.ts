/**
 * Seeded tiny models with small thresholds for policy and session tests, each loaded into a
 * reference backend: Phi-3 LongRoPE (L = 16) and Llama dynamic NTK (new frequencies past 16).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ModelConfig, type RopeSchedule, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
// The module itself, not '@ropeswitch/cli': tests have no alias for the CLI (it would resolve to its
// built dist and a second copy of core), and its index pulls every backend and the bench into each test file.
import { writeRandomCheckpoint } from '../../cli/src/random-models/random-checkpoint.js';

/** The shape both tiny models share (and the root reference-backend tests build on). */
export const TINY_BASE_JSON: Record<string, unknown> = {
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
};

/** Phi-3 with LongRoPE: threshold L = 16 (S = 16 short, S = 17 long), M = 64. */
export const TINY_LONGROPE_JSON: Record<string, unknown> = {
  ...TINY_BASE_JSON,
  model_type: 'phi3',
  max_position_embeddings: 64,
  original_max_position_embeddings: 16,
  tie_word_embeddings: false,
  rope_scaling: { type: 'longrope', short_factor: [1.0, 1.2, 1.5, 2.0], long_factor: [2.0, 4.0, 7.0, 11.0] },
};

/** Llama with dynamic NTK: new frequencies at every S > 16, positions up to 32. */
export const TINY_DYNAMIC_JSON: Record<string, unknown> = {
  ...TINY_BASE_JSON,
  model_type: 'llama',
  max_position_embeddings: 16,
  tie_word_embeddings: true,
  rope_scaling: { type: 'dynamic', factor: 2.0 },
};

export interface TinyModel {
  readonly config: ModelConfig;
  readonly backend: ReferenceBackend;
  readonly schedule: RopeSchedule;
  /** The schedule's threshold (16 for both tiny models). */
  readonly threshold: number;
  readonly vocab: number;
}

/** Writes a seeded checkpoint for `json` to a temp dir, loads it into a reference backend, removes the dir. */
export async function loadTinyModel(json: Record<string, unknown>, seed: number): Promise<TinyModel> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-tiny-'));
  try {
    await writeRandomCheckpoint(dir, json, { seed });
    const { config, weights } = await loadCheckpoint(dir);
    try {
      const backend = new ReferenceBackend(config, weights);
      const schedule = createRopeSchedule(config.rope);
      return { config, backend, schedule, threshold: schedule.threshold!, vocab: config.vocabSize };
    } finally {
      await weights.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const tinyLongRope = (seed = 7): Promise<TinyModel> => loadTinyModel(TINY_LONGROPE_JSON, seed);
export const tinyDynamicNtk = (seed = 11): Promise<TinyModel> => loadTinyModel(TINY_DYNAMIC_JSON, seed);
