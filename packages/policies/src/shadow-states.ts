/**
 * What `shadowPrefill` does with one row of a forward, as a named state decided from plain
 * facts about the sequence, so the decision reads (and is tested) apart from the caches it acts on.
 *
 * A copy's life along a decode that crosses the threshold:
 *
 *     idle → prepare → start → building … → swap → idle (the copy caught up by the crossing)
 *     idle → start → building … → late … → swap → idle  (late 'pass': it caught up after the crossing)
 *     idle … → late-start → late … → swap → idle        (late 'pass', no plan to cross)
 *     idle … → rebuild → idle                           (late 'catch-up', no plan to cross)
 *
 * `prepare` is the forward that leaves the sequence at the window's start (its next token starts
 * the copy); a prompt that ends inside the window goes from idle to start at once.
 * Under late 'catch-up' a copy that lags at the crossing is swapped in there, with what it lacks.
 * A copy out of sync with its sequence (cropped or rebuilt by the caller) is dropped before the
 * facts are taken: it counts as none. Nothing here touches a cache; `shadowPrefill` maps each
 * state to its action.
 *
 * @module
 */

/** What the policy knows of a sequence's copy (one in sync with the sequence). */
export interface ShadowCopyFacts {
  /** The copy is built under the row's regime (at a crossing: the regime the row needs). */
  readonly rowRegime: boolean;
  /** The copy holds every cached token: its length is the live cache's. */
  readonly caughtUp: boolean;
}

/** The facts for a schedule with a threshold; `C` is the caller's copy, carried to the states that act on it. */
export interface CrossingFacts<C extends ShadowCopyFacts = ShadowCopyFacts> {
  /** The largest length that keeps the first regime. */
  readonly threshold: number;
  /** The schedule has a regime per length past the threshold (dynamic NTK): no one regime to prepare. */
  readonly changesEveryStep: boolean;
  /** A copy starts once the sequence is within this many tokens of the threshold. */
  readonly window: number;
  /** The sequence's length after the row (S). */
  readonly length: number;
  /** Some cached key was rotated under another regime than the row's: this row crosses. */
  readonly stale: boolean;
  /** The length the sequence is planned to reach; `undefined`: assumed to cross. */
  readonly plannedLength: number | undefined;
  /** What a crossing the copy is not ready for does (see `ShadowPrefillOptions.late`). */
  readonly late: 'catch-up' | 'pass';
  /** The regime past the threshold differs from the row's (else a copy would change nothing). */
  readonly regimeAhead: boolean;
  /** The sequence's copy, if it has one. */
  readonly copy: C | undefined;
}

/** The facts {@link shadowState} decides on: a schedule without a threshold needs no others. */
export type ShadowFacts<C extends ShadowCopyFacts = ShadowCopyFacts> = { readonly threshold: undefined } | CrossingFacts<C>;

/** What to do with the row; states that build or start a copy carry the threshold it is paced for. */
export type ShadowState<C extends ShadowCopyFacts = ShadowCopyFacts> =
  /** Nothing to prepare (no crossing ahead, outside the window, or not planned to cross): the row passes. */
  | { readonly kind: 'idle' }
  /**
   * The row leaves the sequence at the window's start, so the next token starts a copy: set the
   * copy up now (its storage for the whole plan, the sequence's mirror), so that the step that
   * starts it carries only its first chunk. The row passes.
   */
  | { readonly kind: 'prepare'; readonly threshold: number }
  /** The sequence entered the window: start a copy under the regime past the threshold, its first chunk beside the row. */
  | { readonly kind: 'start'; readonly threshold: number }
  /** The copy is under way before the crossing: the row passes, the copy's next chunk runs beside it. */
  | { readonly kind: 'building'; readonly threshold: number; readonly copy: C }
  /** The crossing (or past a late one) with a copy that holds every cached key, or catch-up finishing it: swap it in. */
  | { readonly kind: 'swap'; readonly copy: C }
  /** The crossing came before the copy caught up and is not to finish it now: the row passes, the copy keeps building. */
  | { readonly kind: 'late'; readonly threshold: number; readonly copy: C }
  /** Late 'pass', a crossing with no copy of the row's regime: drop any other, the row passes, a copy starts under its regime. */
  | { readonly kind: 'late-start'; readonly threshold: number }
  /** Stale keys with no copy to use (`'no-copy'`: drop any other) or under dynamic NTK: re-prefill the row's sequence. */
  | { readonly kind: 'rebuild'; readonly reason: 'no-copy' | 'changes-every-step' };

const IDLE = { kind: 'idle' } as const;

/** The state of a sequence's copy for its next row (see the module comment for the transitions). */
export function shadowState<C extends ShadowCopyFacts>(facts: ShadowFacts<C>): ShadowState<C> {
  const { threshold } = facts;
  if (threshold === undefined) return IDLE;
  if (facts.changesEveryStep) return facts.stale ? { kind: 'rebuild', reason: 'changes-every-step' } : IDLE;
  const { copy, late } = facts;
  if (facts.stale) {
    // The crossing: swap the copy in, finishing in this forward what it lacks, unless told to let
    // the row pass (to a cheaper policy after this one) and keep building in chunks.
    if (!copy?.rowRegime) return late === 'catch-up' ? { kind: 'rebuild', reason: 'no-copy' } : { kind: 'late-start', threshold };
    return copy.caughtUp || late === 'catch-up' ? { kind: 'swap', copy } : { kind: 'late', threshold, copy };
  }
  if (copy) {
    if (facts.length <= threshold) return { kind: 'building', threshold, copy };
    // Past a late crossing that another policy served: swap once the copy has caught up.
    return copy.rowRegime && copy.caughtUp ? { kind: 'swap', copy } : { kind: 'late', threshold, copy };
  }
  const crosses = facts.plannedLength === undefined || facts.plannedLength > threshold;
  if (!crosses || !facts.regimeAhead) return IDLE;
  const windowStart = threshold - facts.window;
  if (facts.length === windowStart) return { kind: 'prepare', threshold };
  return facts.length <= threshold && facts.length > windowStart ? { kind: 'start', threshold } : IDLE;
}
