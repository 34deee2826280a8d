import { BackendError, type ModelConfig } from '@ropeswitch/core';

/** Tokens (and logits rows) one pass of a forward may hold so that each of its buffers fits one storage binding. */
export interface PassLimits {
  /** New tokens per pass: the widest per-token activation (qkv, gate_up, …) times this fits. */
  readonly tokens: number;
  /** Logits rows per pass (`vocab` floats each). */
  readonly logitRows: number;
}

/**
 * What one pass may hold on a device whose storage bindings span `maxBindingBytes`.
 * @throws BackendError `'tensor-too-large'` when one token's activations or one row of logits do
 * not fit one binding (naming it and both sizes): no split of the forward helps then.
 */
export function passLimits(config: ModelConfig, maxBindingBytes: number): PassLimits {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  // Per-token widths of every activation buffer of a pass, and of its logits.
  const widths: [string, number][] = [
    ['hidden state', H],
    ['qkv projection', qDim + 2 * numKvHeads * headDim],
    ['attention output', qDim],
    ['gate_up projection', 2 * I],
    ['MLP activation', I],
    ['logits', V],
  ];
  for (const [what, floats] of widths) {
    if (floats * 4 > maxBindingBytes) {
      throw new BackendError('tensor-too-large', `the ${what} of one token is ${floats * 4} bytes, over this device's storage binding size (${maxBindingBytes} bytes)`);
    }
  }
  const widest = Math.max(...widths.slice(0, -1).map(([, f]) => f));
  return { tokens: Math.floor(maxBindingBytes / (4 * widest)), logitRows: Math.floor(maxBindingBytes / (4 * V)) };
}

/** A run of one request row's new tokens that one pass computes. */
export interface PassPiece {
  /** The request row. */
  readonly row: number;
  /** First token of the piece within the row (its cache index is the cache's length plus this). */
  readonly from: number;
  readonly count: number;
  /** Where the piece's tokens start in the pass's activations. */
  readonly start: number;
  /** Logits rows the piece returns: those of its last `logits` tokens. */
  readonly logits: number;
}

/** Pieces of rows run through every layer together. */
export interface ForwardPass {
  readonly pieces: readonly PassPiece[];
  readonly tokens: number;
  readonly logitRows: number;
}

/**
 * Cuts a forward's rows (`tokens` new tokens each, logits for the last `logits`) into passes of at
 * most `limits` tokens and logits rows, in request order. One pass when everything fits (every
 * forward on real devices but long prefills): then the forward is what it always was. A row cut
 * across passes is a chunked prefill, run inside one forward: its later pieces attend to the keys
 * its earlier ones wrote past the cache's length, and the whole forward still commits once.
 */
export function planPasses(rows: readonly { readonly tokens: number; readonly logits: number }[], limits: PassLimits): ForwardPass[] {
  const passes: ForwardPass[] = [];
  let pieces: PassPiece[] = [];
  let tokens = 0;
  let logitRows = 0;
  const close = () => {
    if (pieces.length > 0) passes.push({ pieces, tokens, logitRows });
    pieces = [];
    tokens = 0;
    logitRows = 0;
  };
  rows.forEach((row, r) => {
    const firstLogit = row.tokens - row.logits;
    let from = 0;
    while (from < row.tokens) {
      let end = Math.min(row.tokens, from + limits.tokens - tokens);
      // Logits rows of [from, end): its tokens at or past firstLogit.
      const over = Math.max(0, end - Math.max(from, firstLogit)) - (limits.logitRows - logitRows);
      if (over > 0) end -= over;
      if (end <= from) {
        close();
        continue;
      }
      const logits = Math.max(0, end - Math.max(from, firstLogit));
      pieces.push({ row: r, from, count: end - from, start: tokens, logits });
      tokens += end - from;
      logitRows += logits;
      from = end;
      if (tokens === limits.tokens) close();
    }
  });
  close();
  return passes;
}
