import type { Backend } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import { positionLimit } from '../config/position-limit.js';
import { SessionError } from '../errors.js';
import { failedForward, lengthsOf } from '../policy/backend-call.js';
import type { PolicyRequest, PolicyResult, PolicyRow } from '../policy/cache-policy.js';
import type { PolicyEvent } from '../policy/policy-events.js';
import { type PolicyBackend, isPolicyBackend, wrapBackend } from '../policy/wrap-backend.js';
import type { RopeRegime } from '../rope/regime.js';
import type { RopeSchedule } from '../rope/schedule.js';
import type { PrefixCache } from './prefix-cache.js';

export interface SessionOptions {
  /** Called with each event a policy reports for this sequence, as it happens. */
  readonly onEvent?: (event: PolicyEvent) => void;
  /**
   * Overrides the schedule derived from the backend's config (e.g. a pinned regime), for a bare
   * backend: the session wraps it with this schedule, so its policies-to-be see it too. A wrapped
   * backend already has its schedule (`wrapBackend({ schedule }, …)`): another one is refused.
   */
  readonly schedule?: RopeSchedule;
  /**
   * Default for {@link PrefillOptions.chunkSize}: a scheduler's sessions run long prompts in chunks
   * so that their prefill interleaves with other sequences' decode steps.
   */
  readonly chunkSize?: number;
  /**
   * Reuse cached prefixes: a prefill into an empty session starts from the longest usable one
   * (a clone), and every successful prefill stores the sequence so far for later sessions. A prefix
   * whose keys another regime rotated is used only through a chain that rebuilds stale keys
   * (`backend.staleKeys === 'rebuild'`: `rePrefill`, `preEstimate`, `shadowPrefill` catching up), so a
   * hit is always as exact as a fresh prefill; for any other chain it is a miss. The prefix cache
   * must hold caches of this session's backend only.
   */
  readonly prefixCache?: PrefixCache;
}

export interface PrefillOptions {
  /**
   * Run the prompt in forwards of at most this many tokens (default: one forward). Every chunk is
   * rotated under the regime of the whole prompt's length, never short for the first chunks and
   * long for the rest.
   */
  readonly chunkSize?: number;
  /**
   * Total length this sequence is expected to reach (prompt + max new tokens): policies plan with
   * it, and the cache reserves room for it once, so no decode step pays for growing it.
   */
  readonly plannedLength?: number;
  /** Logits of how many trailing prompt positions to return (default 1). */
  readonly logits?: number;
  readonly signal?: AbortSignal;
}

export interface SessionForwardOptions {
  /** Logits of how many trailing positions to return (default 1). */
  readonly logits?: number;
  readonly signal?: AbortSignal;
}

/**
 * One sequence: its tokens and its KV cache on one backend, for hand-written generation loops.
 * Each forward rotates the new tokens under the regime of the sequence's total length after them
 * (what HF's rotary module does) and sends the request through `backend`. Over a bare backend the
 * cached keys keep their rotation, so across a regime change the cache goes stale exactly like an
 * HF custom loop; over `wrapBackend(backend, policy)` the policy keeps it correct, the same fix
 * `generate()` gets. A wrapped backend is used as it is (its one chain checks each request once);
 * a bare one is wrapped once, with no policies.
 *
 * ```ts
 * const session = new Session(wrapBackend(backend, rePrefill()));
 * let logits = await session.prefill(prompt, { plannedLength: prompt.length + 64 });
 * for (let i = 0; i < 64; i++) logits = await session.forward([argmax(logits)]);
 * session.dispose();
 * ```
 */
export class Session {
  /**
   * What every forward goes through: the wrapped backend as given, or a bare one wrapped once
   * (an empty chain: requests and results checked, a failed call never leaves rows in the cache).
   */
  readonly backend: PolicyBackend;
  /** The schedule the new tokens are rotated by: the wrapped backend's, which its policies see too. */
  readonly schedule: RopeSchedule;
  /** Total length the sequence is expected to reach, once a prefill said so. */
  plannedLength: number | undefined;
  private readonly cacheRef: KvCache;
  private readonly eventLog: PolicyEvent[] = [];

  /**
   * @throws SessionError `schedule-conflict` for a wrapped `backend` and another `options.schedule`;
   * `foreign-cache` for an `options.prefixCache` already tied to another backend.
   */
  constructor(
    backend: Backend,
    private readonly options: SessionOptions = {},
  ) {
    const { schedule } = options;
    if (isPolicyBackend(backend)) {
      if (schedule !== undefined && schedule !== backend.schedule) {
        throw new SessionError('schedule-conflict', 'this backend is wrapped with its own schedule, which its policies use: pass the schedule to wrapBackend({ schedule }, backend, ...policies) instead of Session');
      }
      this.backend = backend;
    } else {
      this.backend = schedule ? wrapBackend({ schedule }, backend) : wrapBackend(backend);
    }
    this.schedule = this.backend.schedule;
    options.prefixCache?.attach(this.backend.base);
    this.cacheRef = this.backend.createCache();
  }

  /** The sequence's cache. Its identity is stable: a policy that rebuilds it swaps the contents in. */
  get cache(): KvCache {
    return this.cacheRef;
  }

  /** Tokens seen so far (prompt and generated). */
  get length(): number {
    return this.cacheRef.length;
  }

  /** Every event policies reported for this sequence, oldest first. */
  get events(): readonly PolicyEvent[] {
    return this.eventLog;
  }

  /** A copy of the sequence's token ids. */
  tokens(): Int32Array {
    return this.cacheRef.tokens();
  }

  /**
   * Runs a prompt (or the next turn of one) after what the session holds, in chunks when asked.
   * Returns the logits of the last `logits` positions, `[position][vocab]`. A failed or aborted
   * chunk throws and leaves the session as it was before that chunk (earlier chunks stay cached;
   * a prefix taken from `SessionOptions.prefixCache` goes again when the first chunk fails).
   */
  async prefill(ids: ArrayLike<number>, options: PrefillOptions = {}): Promise<Float32Array> {
    checkIds(ids);
    const start = this.cacheRef.length;
    const total = start + ids.length;
    const chunk = options.chunkSize ?? this.options.chunkSize ?? ids.length;
    if (!Number.isInteger(chunk) || chunk < 1) throw new SessionError('bad-chunk-size', `chunkSize must be a positive integer; got ${chunk}`);
    const planned = options.plannedLength ?? this.plannedLength;
    if (options.plannedLength !== undefined) {
      const p = options.plannedLength;
      if (!Number.isInteger(p) || p < total) {
        throw new SessionError('bad-planned-length', `plannedLength must be an integer ≥ the length after the prompt (${total}); got ${p}`);
      }
    }
    const want = options.logits ?? 1;
    checkLogitsCount(want, ids.length);
    // One regime for every chunk, decided by the whole prompt's length.
    const regime = this.schedule.regimeFor(total);
    // Never more than the model can hold: a plan past the position limit fails at that position anyway.
    const room = planned === undefined ? undefined : Math.min(planned, positionLimit(this.backend.config));
    const reused = start === 0 ? this.takePrefix(ids, regime, want, room) : 0;
    let logits: Float32Array = new Float32Array(0);
    try {
      if (room !== undefined) this.cacheRef.reserve(Math.max(0, room - this.cacheRef.length));
      for (let from = reused; from < ids.length; from += chunk) {
        const to = Math.min(ids.length, from + chunk);
        const tail = Math.max(0, want - (ids.length - to));
        const part = await this.run(Array.from({ length: to - from }, (_, i) => ids[from + i]!), regime, Math.min(tail, to - from), true, planned, options.signal);
        if (part.length > 0) logits = concat(logits, part);
      }
    } catch (error) {
      // Nothing of this prefill ran: the session goes back to empty, as it was (policies forget the prefix).
      if (reused > 0 && this.cacheRef.length === reused) {
        this.cacheRef.crop(0);
        this.backend.releaseSequence(this.cacheRef);
      }
      throw error;
    }
    // The plan holds once the prompt it came with is in: a failed prefill leaves the old one.
    this.plannedLength = planned;
    this.options.prefixCache?.put(this.cacheRef);
    return logits;
  }

  /**
   * Starts an empty session from the longest usable prefix of `ids` in the prefix cache; returns
   * its length (0 on a miss). At least `max(1, want)` tokens are left to run, so the logits asked
   * for are computed. The copy is made with room for `capacity` tokens (the planned length), so
   * the reservation after it copies nothing again.
   */
  private takePrefix(ids: ArrayLike<number>, regime: RopeRegime, want: number, capacity: number | undefined): number {
    const prefixes = this.options.prefixCache;
    if (prefixes === undefined) return 0;
    // Another regime's prefix only through a chain that makes it exact (rePrefill, shadowPrefill catching up).
    const otherRegimes = this.backend.staleKeys === 'rebuild';
    const hit = prefixes.take(ids, { regime, otherRegimes, maxLength: ids.length - Math.max(1, want), ...(capacity !== undefined ? { capacity } : {}) });
    if (hit === undefined) return 0;
    try {
      this.cacheRef.replaceWith(hit);
    } catch (error) {
      hit.dispose();
      throw error;
    }
    return this.cacheRef.length;
  }

  /** Runs `ids` after what the session holds; returns the logits of the last `logits` positions (default 1), `[position][vocab]`. */
  async forward(ids: ArrayLike<number>, options: SessionForwardOptions = {}): Promise<Float32Array> {
    checkIds(ids);
    const want = options.logits ?? 1;
    checkLogitsCount(want, ids.length);
    const regime = this.schedule.regimeFor(this.cacheRef.length + ids.length);
    return this.run(ids, regime, want, false, this.plannedLength, options.signal);
  }

  /** Ends the sequence: policies drop what they keep for it, and the cache is freed. */
  dispose(): void {
    if (this.cacheRef.disposed) return;
    this.backend.releaseSequence(this.cacheRef);
    this.cacheRef.dispose();
  }

  private async run(
    ids: ArrayLike<number>,
    regime: RopeRegime,
    logits: number,
    prefill: boolean,
    plannedLength: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Float32Array> {
    const start = this.cacheRef.length;
    const row: PolicyRow = {
      tokens: ids,
      positions: Int32Array.from({ length: ids.length }, (_, i) => start + i),
      cache: this.cacheRef,
      regime,
      logits,
      ...(prefill ? { prefill } : {}),
      ...(plannedLength !== undefined ? { plannedLength } : {}),
      ...(this.options.prefixCache ? { prefixes: this.options.prefixCache } : {}),
    };
    const request: PolicyRequest = { rows: [row], ...(signal ? { signal } : {}) };
    const before = lengthsOf(request);
    let result: PolicyResult;
    try {
      result = await this.backend.forward(request);
    } catch (error) {
      // Whatever failed (the backend, or a policy's call into it), the sequence is as it was and the error typed.
      throw failedForward(this.backend, request, before, error);
    }
    const out = result.rows[0]!;
    for (const event of out.events ?? []) {
      this.eventLog.push(event);
      this.options.onEvent?.(event);
    }
    return out.data;
  }
}

function checkIds(ids: ArrayLike<number>): void {
  if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number' || ids.length === 0) {
    throw new SessionError('empty-input', 'a forward needs at least one token id');
  }
}

function checkLogitsCount(want: number, n: number): void {
  if (!Number.isInteger(want) || want < 0 || want > n) {
    throw new SessionError('bad-logits-count', `logits must be an integer in [0, ${n}]; got ${want}`);
  }
}

function concat(a: Float32Array, b: Float32Array): Float32Array {
  if (a.length === 0) return b;
  const out = new Float32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
