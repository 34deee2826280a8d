import type { ForwardNext, PolicyEvent, PolicyRequest, PolicyResult, PolicyRow } from '@ropeswitch/core';
import { PolicyError, isAbortError, withRowEvents } from '@ropeswitch/core';

/** What a policy does to one request row for one forward. */
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
 * its caller was told.
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

/** Row events only, with the request passed on unchanged. */
export function eventsOnly(events: readonly PolicyEvent[]): RowRewrite | undefined {
  return events.length > 0 ? { events } : undefined;
}

/** `a` followed by `b` as one `Int32Array`. */
export function concatIds(a: ArrayLike<number>, b: ArrayLike<number>): Int32Array {
  const out = new Int32Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
