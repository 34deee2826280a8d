import type { Backend } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import { createRopeSchedule } from '../rope/create-schedule.js';
import type { RopeSchedule } from '../rope/schedule.js';

/**
 * One sequence being decoded: its tokens and its KV cache on one backend. Each forward rotates the
 * new tokens under the regime of the total length after them (what HF's rotary module does) and
 * keeps every cached key as it is, so across a regime change the cache goes stale, exactly like a
 * hand-written loop over HF transformers. Cache policies (which fix that) wrap the backend.
 */
export class Session {
  readonly schedule: RopeSchedule;
  private cacheRef: KvCache;

  constructor(
    readonly backend: Backend,
    schedule?: RopeSchedule,
  ) {
    this.schedule = schedule ?? createRopeSchedule(backend.config.rope);
    this.cacheRef = backend.createCache();
  }

  get cache(): KvCache {
    return this.cacheRef;
  }

  /** Tokens seen so far (prompt and generated). */
  get length(): number {
    return this.cacheRef.length;
  }

  /** Runs `ids` after what the session holds; returns the logits of the last `logits` positions (default 1), `[position][vocab]`. */
  async forward(ids: ArrayLike<number>, options: { logits?: number; signal?: AbortSignal } = {}): Promise<Float32Array> {
    const start = this.cacheRef.length;
    const positions = Int32Array.from({ length: ids.length }, (_, i) => start + i);
    const regime = this.schedule.regimeFor(start + ids.length);
    const result = await this.backend.forward({
      rows: [{ tokens: ids, positions, cache: this.cacheRef, regime, logits: options.logits ?? 1 }],
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return result.rows[0]!.data;
  }

  /** Frees the cache. */
  dispose(): void {
    this.cacheRef.dispose();
  }
}
