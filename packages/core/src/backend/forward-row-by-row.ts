import type { ForwardRequest, ForwardResult, ForwardRow, RowLogits } from './backend.js';

/** One row of {@link forwardRowByRow}, run, its new keys and values not yet part of its cache. */
export interface RowRun {
  /** The row's logits; called once every row has run and before any commit, so it may still throw. */
  logits(): RowLogits;
  /** Makes the row's new keys and values part of its cache. */
  commit(): void;
}

/**
 * The forward of a backend that runs a request's rows one after another: `run` each row in order,
 * checking the abort signal before each and after the last, then collect every row's logits, and
 * only then commit every row, so a failed or aborted call leaves every cache as it was.
 */
export async function forwardRowByRow(request: ForwardRequest, run: (row: ForwardRow, index: number) => Promise<RowRun>): Promise<ForwardResult> {
  const runs: RowRun[] = [];
  for (let i = 0; i < request.rows.length; i++) {
    request.signal?.throwIfAborted();
    runs.push(await run(request.rows[i]!, i));
  }
  request.signal?.throwIfAborted();
  const rows = runs.map((r) => r.logits());
  for (const r of runs) r.commit();
  return { rows };
}
