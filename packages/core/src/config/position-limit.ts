import type { ModelConfig } from './model-config.js';

/**
 * The first position id a forward may not use. `max_position_embeddings` for every schedule but
 * dynamic NTK, whose whole point is to run past it (HF 4.45 sets its threshold there): there the
 * limit is `factor ×` that threshold, the length the stretched base was designed for.
 */
export function positionLimit(config: ModelConfig): number {
  const s = config.rope.scaling;
  if (s.type === 'dynamic') return Math.floor(s.factor * Math.max(s.originalMaxPositionEmbeddings, config.maxPositionEmbeddings));
  return config.maxPositionEmbeddings;
}
