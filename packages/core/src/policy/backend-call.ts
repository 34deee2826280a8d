import type { Backend, ForwardResult, RowLogits } from '../backend/backend.js';
import { validateForwardResult } from '../backend/validate-result.js';
import { BackendError, RopeswitchError, isAbortError } from '../errors.js';
import type { ForwardNext, PolicyRequest } from './cache-policy.js';

/**
 * The bottom of a policy chain: sends a request to `backend`, split into consecutive calls of at
 * most `maxRows` rows (policies may add rows; should a later call fail, the rows of the earlier
 * ones stay committed, which is why policies put their extra rows first). What each call returns is
 * checked ({@link validateForwardResult}); a failed call's rows are cropped back off every cache it
 * touched, and an untyped failure becomes a `BackendError` `forward-failed`.
 *
 * `checkResults: false` leaves the result check to a caller that makes it anyway (a batch
 * scheduler's queue, whose merged step is checked sequence by sequence by the wrapper above it).
 */
export function backendCall(backend: Backend, options: { readonly checkResults?: boolean } = {}): ForwardNext {
  const check = options.checkResults ?? true;
  const call = async (request: PolicyRequest): Promise<ForwardResult> => {
    const before = lengthsOf(request);
    try {
      const result = await backend.forward(request);
      if (check) validateForwardResult(backend.config, request, result, backend.name);
      return result;
    } catch (error) {
      throw failedForward(backend, request, before, error);
    }
  };
  return async (request) => {
    const max = backend.capabilities.maxRows;
    if (request.rows.length <= max) return call(request);
    const rows: RowLogits[] = [];
    for (let i = 0; i < request.rows.length; i += max) {
      const part = await call({ ...request, rows: request.rows.slice(i, i + max) });
      rows.push(...part.rows);
    }
    return { rows };
  };
}

/** Each row's cache length, before a forward. */
export function lengthsOf(request: PolicyRequest): number[] {
  return request.rows.map((row) => row.cache.length);
}

/**
 * What a failed forward leaves and throws: whatever it committed to the rows' caches is cropped
 * back to `before` (no cache is left half-written), and a failure that is neither typed nor an
 * abort becomes a `BackendError` `forward-failed` with the original as its cause. Used for each
 * backend call, and by `Session` for a step as a whole (a policy's call into the backend, such as
 * `rerotateKeys`, can fail outside any forward call).
 */
export function failedForward(backend: Backend, request: PolicyRequest, before: readonly number[], error: unknown): unknown {
  request.rows.forEach((row, r) => {
    if (!row.cache.disposed && row.cache.length > before[r]!) row.cache.crop(before[r]!);
  });
  if (error instanceof RopeswitchError || isAbortError(error, request.signal)) return error;
  const why = error instanceof Error ? error.message : String(error);
  return new BackendError('forward-failed', `backend ${backend.name} failed a forward of ${request.rows.length} rows: ${why}`, { cause: error });
}
