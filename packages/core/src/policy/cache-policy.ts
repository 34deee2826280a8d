import type { Backend, ForwardRequest, ForwardResult, ForwardRow, RowLogits } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import type { RopeRegime } from '../rope/regime.js';
import type { RopeSchedule } from '../rope/schedule.js';
import type { PolicyEvent } from './policy-events.js';

/**
 * A forward row as policies see it: the backend's row plus what the sequence's owner knows about
 * its future. Backends ignore the extra fields.
 */
export interface PolicyRow extends ForwardRow {
  /** Total length the sequence is expected to reach (prompt + max new tokens), when known. */
  readonly plannedLength?: number;
  /** True for the rows of a prompt (`Session.prefill`); decode rows leave it unset. */
  readonly prefill?: boolean;
  /**
   * The sequence's prefix cache, when its session has one (`SessionOptions.prefixCache`): a policy
   * may start a cache of another regime from a prefix cached under that regime, and leave its own
   * there (`shadowPrefill` does both with its long-regime copies).
   */
  readonly prefixes?: PrefixSource;
}

/** Cached prefixes a policy may take (a private clone, keys all in `regime`) and add to: a {@link PrefixCache}. */
export interface PrefixSource {
  /**
   * A clone of the longest cached prefix of `ids` (at most `maxLength` tokens) whose keys were all
   * rotated by `regime`, with room for `capacity` tokens (default its length), or `undefined`.
   */
  take(ids: ArrayLike<number>, options: { readonly regime: RopeRegime; readonly maxLength?: number; readonly capacity?: number }): KvCache | undefined;
  /** Stores a clone of `cache` for later sequences. */
  put(cache: KvCache): void;
}

export interface PolicyRequest extends ForwardRequest {
  readonly rows: readonly PolicyRow[];
}

/** One row's logits and the events policies reported for its sequence during this forward. */
export interface PolicyRowResult extends RowLogits {
  readonly events?: readonly PolicyEvent[];
}

export interface PolicyResult extends ForwardResult {
  readonly rows: readonly PolicyRowResult[];
}

/** How a policy or chain treats cached keys of another regime (see {@link CachePolicy.staleKeys}). */
export type StaleKeyHandling = 'rebuild' | 'approximate';

/** Runs the rest of the chain (the next policy, or the backend after the last one). */
export type ForwardNext = (request: PolicyRequest) => Promise<PolicyResult>;

export interface WrapForwardOptions {
  /** The request as the previous policy passed it on. */
  readonly request: PolicyRequest;
  /** The rest of the chain. Call it at most once. */
  readonly next: ForwardNext;
  /** The backend under the chain: capabilities, `createCache`, `rerotateKeys`. */
  readonly backend: Backend;
  /** The model's RoPE schedule (threshold, regimes). */
  readonly schedule: RopeSchedule;
}

/**
 * A KV-cache policy: a plain object of optional hooks around a backend's forward call (like a
 * Vercel AI SDK middleware). `wrapForward` sees each request with every row's cache and the
 * schedule, and may rewrite rows (another regime, a rebuilt cache), add rows (a shadow copy's
 * chunk, batched into the same pass over the weights), rotate caches, report events on a row's
 * result, or pass the request through unchanged. It must return one result row per request row,
 * in order.
 *
 * Each sequence decides for itself: a policy keeps per-sequence state keyed by the sequence's
 * cache (whose identity survives a swap, see {@link KvCache.replaceWith}), never across rows.
 */
export interface CachePolicy {
  /** Shown in events and reports (e.g. `re-prefill`). */
  readonly name: string;
  /**
   * What the policy does with a row whose cached keys were rotated under another regime than its
   * new tokens: `'rebuild'` leaves the sequence as if it had run under the row's regime from its
   * first token (exact), `'approximate'` changes the keys otherwise (e.g. rotates them); absent, it
   * passes such a row on as it is, and the policies after it decide. A chain's answer is its first
   * policy's that has one ({@link PolicyBackend.staleKeys}); a prefix cache reuses a prefix cached
   * under another regime only through a chain that rebuilds.
   */
  readonly staleKeys?: StaleKeyHandling;
  wrapForward?(options: WrapForwardOptions): Promise<PolicyResult>;
  /** The sequence owning `cache` ended: drop (and dispose) whatever is kept for it. */
  releaseSequence?(cache: KvCache): void;
}
