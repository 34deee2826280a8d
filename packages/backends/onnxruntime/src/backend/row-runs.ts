import { type ArrayKvCache, BackendError, type ForwardRequest, type ForwardResult, type ForwardRow, type KvElements, type RowLogits } from '@ropeswitch/core';

/** Tokens `[start, end)` of request row `row`: the part of it one session run carries. */
export interface RowPiece {
  readonly row: number;
  readonly start: number;
  readonly end: number;
}

/** How {@link planRuns} cuts a request into session runs. */
export interface RunLimits {
  /** Rows one run can carry (the graph's slots; 1 for a graph of one sequence). */
  readonly slots: number;
  /** Most tokens of one row in one run: longer rows run in pieces, each attending to the ones before. */
  readonly chunk: number;
}

/**
 * Cuts a request into session runs: each run carries at most `slots` pieces, of distinct rows, in
 * request order; a row longer than `chunk` is cut into pieces that go to consecutive runs (a piece
 * attends to the keys its predecessors wrote). A request whose rows are all at most `chunk` long
 * and at most `slots` many is one run.
 */
export function planRuns(rows: readonly Pick<ForwardRow, 'tokens'>[], limits: RunLimits): RowPiece[][] {
  const next = rows.map(() => 0);
  const runs: RowPiece[][] = [];
  for (;;) {
    const run: RowPiece[] = [];
    for (let r = 0; r < rows.length && run.length < limits.slots; r++) {
      const n = rows[r]!.tokens.length;
      const start = next[r]!;
      if (start >= n) continue;
      const end = Math.min(n, start + limits.chunk);
      run.push({ row: r, start, end });
      next[r] = end;
    }
    if (run.length === 0) return runs;
    runs.push(run);
  }
}

/** How many of a piece's tokens have logits wanted: the row's last `logits` (default 1) tokens. */
export function wantedLogits(row: Pick<ForwardRow, 'tokens' | 'logits'>, piece: RowPiece): { from: number; count: number } {
  const from = Math.max(piece.start, row.tokens.length - (row.logits ?? 1));
  return { from, count: Math.max(0, piece.end - from) };
}

/**
 * Runs one session run: writes each piece's new keys and values into its row's cache past the
 * rows already written (uncommitted), and returns, per piece, the logits of its wanted tokens
 * (`[count][vocab]`, see {@link wantedLogits}).
 */
export type RunPieces = (pieces: readonly RowPiece[]) => Promise<readonly Float32Array[]>;

/**
 * The forward of a backend whose session runs carry several rows: cuts the request into runs
 * ({@link planRuns}), checks the abort signal before each run and after the last, runs them in
 * order, collects every row's logits (refusing non-finite ones), and only then commits every row,
 * so a failed or aborted forward leaves every cache as it was. Each row's cache is reserved for
 * its tokens before the first run (its storage does not move during the forward).
 */
export async function forwardInRuns(
  request: ForwardRequest,
  caches: readonly ArrayKvCache<KvElements>[],
  limits: RunLimits,
  vocabSize: number,
  run: RunPieces,
): Promise<ForwardResult> {
  const { rows } = request;
  rows.forEach((row, i) => caches[i]!.reserve(row.tokens.length));
  const logits = rows.map((row): RowLogits => {
    const count = row.logits ?? 1;
    return { count, vocabSize, data: new Float32Array(count * vocabSize) };
  });
  const filled = rows.map(() => 0);
  for (const pieces of planRuns(rows, limits)) {
    request.signal?.throwIfAborted();
    const out = await run(pieces);
    pieces.forEach((piece, k) => {
      const got = out[k]!;
      if (got.length === 0) return;
      for (let i = 0; i < got.length; i++) {
        // The code the wrapped backend's result check uses (validateForwardResult): one failure, one code.
        if (!Number.isFinite(got[i]!)) throw new BackendError('nan-logits', `row ${piece.row} returned a non-finite logit (${got[i]}), computing the step at sequence length ${caches[piece.row]!.length}`);
      }
      logits[piece.row]!.data.set(got, filled[piece.row]!);
      filled[piece.row]! += got.length;
    });
  }
  request.signal?.throwIfAborted();
  rows.forEach((row, i) => caches[i]!.commit(row.tokens, row.positions, row.regime));
  return { rows: logits };
}
