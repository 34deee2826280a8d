/**
 * Typed events a cache policy reports with a forward's result (never console output): what it did
 * to a sequence's cache and at which total length. Each carries the policy's name.
 */

interface EventBase {
  /** The policy that reported it. */
  readonly policy: string;
  /** Total length of the sequence after the forward that reported it (S). */
  readonly atLength: number;
}

/** The regime of the new tokens differs from the regime of the last cached key. */
export interface RegimeChangeEvent extends EventBase {
  readonly type: 'rope-regime-change';
  /** Regime id of the last cached key. */
  readonly from: string;
  /** Regime id of the new tokens. */
  readonly to: string;
}

/** Every token of the sequence was run again under `regime`; the new cache replaced the old one. */
export interface RePrefillEvent extends EventBase {
  readonly type: 're-prefill';
  readonly regime: string;
  /** Tokens recomputed (cached ones and the new ones). */
  readonly tokens: number;
}

/** Cached keys were rotated in place from their regime(s) into `to`. */
export interface RerotateEvent extends EventBase {
  readonly type: 'rerotate';
  readonly from: readonly string[];
  readonly to: string;
  /** Cached positions rotated (per layer and head). */
  readonly keys: number;
  /** Whether the backend rotated its own cache (`true`) or the core CPU rotation ran. */
  readonly onBackend: boolean;
}

/** A sequence's planned length crosses the threshold: it runs under `regime` from its first token. */
export interface PreEstimateEvent extends EventBase {
  readonly type: 'pre-estimate';
  readonly regime: string;
  readonly plannedLength: number;
}

/** A long-regime copy of the cache started building alongside the live one. */
export interface ShadowStartEvent extends EventBase {
  readonly type: 'shadow-start';
  readonly regime: string;
  /** Tokens the copy started with, taken from the session's prefix cache under its regime (absent when none). */
  readonly prefixTokens?: number;
}

/** The shadow copy replaced the live cache. */
export interface ShadowSwapEvent extends EventBase {
  readonly type: 'shadow-swap';
  readonly regime: string;
  /** Tokens the shadow still had to catch up with in the swapping forward (0 when it was ready). */
  readonly catchUpTokens: number;
}

export type PolicyEvent =
  | RegimeChangeEvent
  | RePrefillEvent
  | RerotateEvent
  | PreEstimateEvent
  | ShadowStartEvent
  | ShadowSwapEvent;

export type PolicyEventType = PolicyEvent['type'];
