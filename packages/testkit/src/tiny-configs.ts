/**
 * Tiny model configs shared by the tests and scripts (`scripts/soak.ts`): the `config.json` sizes
 * of a tiny model, a minimal valid Llama `config.json` on them, and a parsed LongRoPE scaling with
 * Phi-3's defaults.
 */
import type { RopeScaling } from '@ropeswitch/core';

/** The sizes every tiny test model shares (`config.json` fields): 4 heads of 16 over hidden 64. */
export const TINY_SIZES = Object.freeze({
  vocab_size: 128,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
});

/** A minimal valid Llama `config.json`: the tiny sizes, 2 KV heads, 256 positions, default RoPE. */
export const TINY_LLAMA = Object.freeze({
  model_type: 'llama',
  ...TINY_SIZES,
  num_key_value_heads: 2,
  max_position_embeddings: 256,
});

export type LongRopeScaling = Extract<RopeScaling, { type: 'longrope' }>;

/** A parsed LongRoPE scaling with Phi-3's L = 4096 and M = 131072, no explicit factors or mscales, then `partial`. */
export function longRopeScaling(partial: Partial<LongRopeScaling> & Pick<LongRopeScaling, 'shortFactor' | 'longFactor'>): LongRopeScaling {
  return {
    type: 'longrope',
    originalMaxPositionEmbeddings: 4096,
    maxPositionEmbeddings: 131072,
    attentionFactor: undefined,
    factor: undefined,
    shortMscale: undefined,
    longMscale: undefined,
    ...partial,
  };
}
