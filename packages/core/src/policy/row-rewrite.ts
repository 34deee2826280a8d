import { PolicyError, isAbortError } from '../errors.js';
import type { CachePolicy, ForwardNext, PolicyRequest, PolicyResult, PolicyRow, WrapForwardOptions } from './cache-policy.js';
import type { PolicyEvent } from './policy-events.js';
import { withRowEvents } from './policy-result.js';

/**
 * What a policy does to one request row for one forward: the contract five of the six shipped
 * policies are written on. Every field is optional; `undefined` (no rewrite) passes the row on.
 */
export interface RowRewrite {
  /** Replaces the request row (the logits it returns stand for the original row's). */
  readonly row?: PolicyRow;
  /** Rows run in the same pass as the request's, before them, asking no logits (e.g. a shadow chunk). */
  readonly extra?: readonly PolicyRow[];
  /** Runs once the whole forward succeeded (e.g. swap a rebuilt cache in). */
  readonly onSuccess?: () => void;
  /** Runs when the forward failed (e.g. dispose a half-built cache). */
  readonly onFailure?: () => void;
  /** Reported on the row's result when the forward succeeds. */
  readonly events?: readonly PolicyEvent[];
  /** What the rewrite does, named in the error when the forward fails (e.g. `re-prefill of 33 tokens`). */
  readonly doing?: string;
}

/**
 * Runs `request` with per-row rewrites in one call to `next`. Extra rows go first, so a backend
 * that must split the batch runs them before the rows whose caches the caller watches: a failure
 * then leaves a shadow ahead of its sequence (cropped on next use), never a sequence ahead of what
 * its caller was told. On failure every `onFailure` runs and, when some rewrite says what it was
 * `doing`, the error becomes a `PolicyError` `forward-failed` naming it (aborts pass as they are).
 */
export async function forwardWithRewrites(
  request: PolicyRequest,
  next: ForwardNext,
  rewrites: readonly (RowRewrite | undefined)[],
): Promise<PolicyResult> {
  if (rewrites.every((r) => r === undefined)) return next(request);
  const extra = rewrites.flatMap((r) => r?.extra ?? []);
  const rows = request.rows.map((row, i) => rewrites[i]?.row ?? row);
  let result: PolicyResult;
  try {
    result = await next({ ...request, rows: [...extra, ...rows] });
  } catch (error) {
    for (const r of rewrites) r?.onFailure?.();
    const doing = rewrites.flatMap((r) => (r?.doing ? [r.doing] : []));
    if (doing.length === 0 || isAbortError(error, request.signal)) throw error;
    const why = error instanceof Error ? error.message : String(error);
    throw new PolicyError('forward-failed', `${doing.join('; ')} failed (${why}); every cache is as it was before this forward`, { cause: error });
  }
  for (const r of rewrites) r?.onSuccess?.();
  let out: PolicyResult = extra.length > 0 ? { ...result, rows: result.rows.slice(extra.length) } : result;
  rewrites.forEach((r, i) => {
    if (r?.events) out = withRowEvents(out, i, r.events, 'first');
  });
  return out;
}

/** Row events only, with the row passed on unchanged (`undefined` when there are none). */
export function eventsOnly(events: readonly PolicyEvent[]): RowRewrite | undefined {
  return events.length > 0 ? { events } : undefined;
}

/** Decides one row's rewrite (or none) for one forward; may be async (e.g. rotate the row's cache first). */
export type RowRewriter = (row: PolicyRow, options: WrapForwardOptions) => RowRewrite | undefined | Promise<RowRewrite | undefined>;

/**
 * A policy written row by row: `rewrite` is asked about each row in order (an async one is awaited
 * before the next row is asked), and the rewrites run in one call to the rest of the chain
 * ({@link forwardWithRewrites}). The easy way to write a policy; `wrapForward` stays for the rest
 * (timing a forward, routing rows, several calls).
 *
 * ```ts
 * const logCrossings = rewriteRows('log-crossings', (row) =>
 *   hasStaleKeys(row) ? eventsOnly([{ type: 'rope-regime-change', policy: 'log-crossings',
 *     from: row.cache.regimeAt(row.cache.length - 1).id, to: row.regime.id, atLength: lengthAfter(row) }]) : undefined);
 * ```
 */
export function rewriteRows(name: string, rewrite: RowRewriter, hooks: Pick<CachePolicy, 'releaseSequence' | 'staleKeys'> = {}): CachePolicy {
  if (typeof name !== 'string' || typeof rewrite !== 'function') {
    throw new PolicyError('not-a-policy', 'rewriteRows(name, rewrite): a name and a function of (row, options) are needed');
  }
  return {
    name,
    async wrapForward(options) {
      const rewrites: (RowRewrite | undefined)[] = [];
      for (const row of options.request.rows) {
        const r = rewrite(row, options);
        rewrites.push(r instanceof Promise ? await r : r);
      }
      return forwardWithRewrites(options.request, options.next, rewrites);
    },
    ...(hooks.releaseSequence ? { releaseSequence: hooks.releaseSequence } : {}),
    ...(hooks.staleKeys ? { staleKeys: hooks.staleKeys } : {}),
  };
}
