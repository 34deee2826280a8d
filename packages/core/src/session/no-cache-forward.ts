import type { Backend } from '../backend/backend.js';
import { scheduleOf } from '../policy/wrap-backend.js';
import type { RopeSchedule } from '../rope/schedule.js';

/**
 * The oracle: one forward over the whole sequence without a cache, under the regime of its total
 * length (what the model was trained on). Returns the logits of the last `last` positions,
 * `[position][vocab]`.
 */
export async function noCacheForward(
  backend: Backend,
  ids: ArrayLike<number>,
  options: { last?: number; schedule?: RopeSchedule; signal?: AbortSignal } = {},
): Promise<Float32Array> {
  const schedule = options.schedule ?? scheduleOf(backend);
  const cache = backend.createCache();
  try {
    const positions = Int32Array.from({ length: ids.length }, (_, i) => i);
    const result = await backend.forward({
      rows: [{ tokens: ids, positions, cache, regime: schedule.regimeFor(ids.length), logits: options.last ?? 1 }],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return result.rows[0]!.data;
  } finally {
    cache.dispose();
  }
}
