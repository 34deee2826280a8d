import type { BackendCapabilities, ModelConfig, PolicyRow, RowRewrite } from '@ropeswitch/core';

/**
 * What a forward costs, in units of one key's attention (one query token against one cached key,
 * every layer): a token costs `tokenCost` (its pass through the weight matrices) plus one unit per
 * key it attends to. `tokenCost` starts as the ratio of the model's multiply-adds (weights per
 * token over attention per key) and is then measured: each forward with shadow work is timed
 * against the tokens and keys it ran, and a least-squares fit of `time ≈ c + b·tokens + g·keys`
 * gives `b / g` once it has enough forwards (kept within 8× of the modelled ratio, against a fit
 * thrown by a pause of the machine).
 */
export interface ShadowCostModel {
  /** A token's weight cost in keys: measured when the fit is good, else modelled. */
  readonly tokenCost: number;
  /** The modelled ratio (from the model's shapes). */
  readonly modelledTokenCost: number;
  /**
   * What a token without logits costs beside one with: its share of the weights and of the
   * attention. Both 1, except on a backend that prunes the last layer (`capabilities.prunesLastLayer`),
   * where such a token stops at that layer's QKV projection.
   */
  readonly withoutLogits: TokenShare;
  /** Forwards timed so far. */
  readonly samples: number;
  /** Adds a timed forward: the request's rows as the policy got them, its rewrites, and how long it took. */
  observe(rows: readonly PolicyRow[], rewrites: readonly (RowRewrite | undefined)[], ms: number): void;
}

/** Forwards timed before the fit is used. */
const MIN_SAMPLES = 16;
/** How far a measured token cost may stray from the modelled one (each way). */
const MAX_DRIFT = 8;

/** A token's weight multiply-adds in one decoder layer: all of them, and its QKV projection's. */
function layerMacs(config: ModelConfig): { layer: number; qkv: number } {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim } = config;
  const qDim = numHeads * headDim;
  const qkv = H * (qDim + 2 * numKvHeads * headDim);
  return { layer: qkv + qDim * H + 2 * H * I + I * H, qkv };
}

/** Keys `n` tokens from cache length `past` attend to: token t sees the cache and the row up to itself. */
function keysOf(n: number, past: number): number {
  return n * past + (n * (n + 1)) / 2;
}

/** Weight multiply-adds of one token over attention multiply-adds of one key, every layer (the LM head is not run for shadow tokens). */
export function modelledTokenCost(config: ModelConfig): number {
  return layerMacs(config).layer / (2 * config.numHeads * config.headDim);
}

/** A token's share of the weights and of the attention a token with logits runs through. */
export interface TokenShare {
  readonly weights: number;
  readonly attention: number;
}

/**
 * The share of a token without logits: all of it, or on a backend that prunes the last layer,
 * every layer but that one's attention, output projection and MLP.
 */
export function withoutLogitsShare(config: ModelConfig, capabilities?: Pick<BackendCapabilities, 'prunesLastLayer'>): TokenShare {
  if (!capabilities?.prunesLastLayer || config.numLayers < 1) return { weights: 1, attention: 1 };
  const { numLayers } = config;
  const { layer, qkv } = layerMacs(config);
  return { weights: (numLayers - 1 + qkv / layer) / numLayers, attention: (numLayers - 1) / numLayers };
}

/** A fresh cost model for `config` on a backend of `capabilities` (see {@link ShadowCostModel}). */
export function costModelOf(config: ModelConfig, capabilities?: Pick<BackendCapabilities, 'prunesLastLayer'>): ShadowCostModel {
  return new FittedCostModel(modelledTokenCost(config), withoutLogitsShare(config, capabilities));
}

/**
 * {@link ShadowCostModel} by least squares. A class, so that every policy's model shares the JIT's
 * work on {@link observe} (a policy made per request would otherwise run it cold).
 */
class FittedCostModel implements ShadowCostModel {
  // Normal equations of time ≈ c + b·tokens + g·keys: sums of x xᵀ and x·time over x = (1, tokens, keys).
  private readonly xx = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  private readonly xy = [0, 0, 0];
  private count = 0;
  private measured: number | undefined;

  constructor(
    readonly modelledTokenCost: number,
    readonly withoutLogits: TokenShare,
  ) {}

  get tokenCost(): number {
    return this.measured ?? this.modelledTokenCost;
  }

  get samples(): number {
    return this.count;
  }

  observe(rows: readonly PolicyRow[], rewrites: readonly (RowRewrite | undefined)[], ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const share = this.withoutLogits;
    let tokens = 0;
    let keys = 0;
    for (let i = 0; i <= rows.length; i++) {
      // The request's rows (as rewritten), then every extra row the rewrites added.
      const group = i < rows.length ? [rewrites[i]?.row ?? rows[i]!] : rewrites.flatMap((r) => r?.extra ?? []);
      for (const row of group) {
        const n = row.tokens.length;
        // Its last `logits` tokens run every layer; the others count at their share.
        const full = Math.min(n, row.logits ?? 1);
        const part = n - full;
        tokens += full + share.weights * part;
        const past = row.cache.length;
        keys += share.attention * keysOf(part, past) + keysOf(full, past + part);
      }
    }
    const { xx, xy } = this;
    // x = (1, tokens, keys)
    xx[0]! += 1; xx[1]! += tokens; xx[2]! += keys;
    xx[4]! += tokens * tokens; xx[5]! += tokens * keys; xx[8]! += keys * keys;
    xx[3] = xx[1]!; xx[6] = xx[2]!; xx[7] = xx[5]!;
    xy[0]! += ms; xy[1]! += tokens * ms; xy[2]! += keys * ms;
    this.count++;
    this.measured = this.refit();
  }

  private refit(): number | undefined {
    if (this.count < MIN_SAMPLES) return undefined;
    const [c, b, g] = solve3(this.xx, this.xy) ?? [];
    if (b === undefined || g === undefined || c === undefined || !(b > 0) || !(g > 0)) return undefined;
    const modelled = this.modelledTokenCost;
    return Math.min(modelled * MAX_DRIFT, Math.max(modelled / MAX_DRIFT, b / g));
  }
}

/**
 * Cost of `n` shadow tokens (no logits) from sequence position `from` (token i attends to
 * `from + i + 1` keys), in key units; continuous in n, so it can be solved for.
 */
function chunkCost(tokenCost: number, share: TokenShare, from: number, n: number): number {
  return n * (share.weights * tokenCost + share.attention * from) + (share.attention * n * (n + 1)) / 2;
}

/**
 * The cost every forward left would have if the rest of the work (the decode rows to come and the
 * shadow's remaining tokens) were spread evenly, and this forward's decode row's own cost.
 * `length` is the sequence length after this forward, `rowTokens` its new tokens.
 */
function evenStep(tokenCost: number, share: TokenShare, length: number, rowTokens: number, shadowLength: number, threshold: number): { step: number; row: number; forwardsLeft: number } {
  const forwardsLeft = Math.ceil((threshold - length) / rowTokens) + 1;
  // Decode rows of the forwards left: rowTokens tokens each, at lengths length, length + rowTokens, …
  const decode = forwardsLeft * rowTokens * tokenCost + rowTokens * (forwardsLeft * length + (rowTokens * forwardsLeft * (forwardsLeft - 1)) / 2);
  const shadow = chunkCost(tokenCost, share, shadowLength, threshold - shadowLength);
  return { step: (decode + shadow) / forwardsLeft, row: rowTokens * (tokenCost + length), forwardsLeft };
}

/**
 * Shadow tokens for this forward so every forward left costs about the same, this one's decode row
 * included: the chunk whose cost fills what the even step leaves beside the row. The even step is
 * never planned below what the last forwards must cost anyway: once the copy has caught up with the
 * sequence it still takes each new token, so a forward at the threshold runs the decode row twice
 * over (live, and the shadow's at its share: all of it, or less where the backend prunes the last
 * layer of tokens without logits). At least one token (the copy's pace of the sequence); past the threshold
 * (a late copy) there is no schedule.
 */
export function paceByCost(model: ShadowCostModel, length: number, rowTokens: number, shadowLength: number, threshold: number): number {
  if (length > threshold) return Infinity;
  const a = model.tokenCost;
  const share = model.withoutLogits;
  const { step, row } = evenStep(a, share, length, rowTokens, shadowLength, threshold);
  const floor = rowTokens * (a + threshold) + chunkCost(a, share, threshold - rowTokens, rowTokens);
  const allowance = Math.max(step, floor) - row;
  // n·(w·a + s·p) + s·n(n + 1)/2 = allowance, for n (w, s: the shadow tokens' shares).
  const b = share.weights * a + share.attention * (shadowLength + 0.5);
  const s = share.attention;
  const n = allowance <= 0 ? 0 : s > 0 ? (-b + Math.sqrt(b * b + 2 * s * allowance)) / s : allowance / b;
  return Math.max(1, Math.min(threshold - shadowLength, Math.round(n)));
}

/**
 * Whether the model is attention-bound at the threshold (a token there attends to at least as many
 * keys as its weights cost): there, pacing by token count leaves the dearest tokens, beside the
 * longest decode rows, to the last steps, and pacing by cost lowers the slowest step the most
 * (≈ 40 % on `builtin`, L = 4096); on weight-bound models the two differ by a few per cent.
 */
export function prefersCostPacing(model: ShadowCostModel, threshold: number): boolean {
  return threshold >= model.tokenCost;
}

/** Solves the symmetric 3 × 3 system `m · x = v` (row-major m); undefined when it is singular. */
function solve3(m: readonly number[], v: readonly number[]): [number, number, number] | undefined {
  const det = (a: readonly number[]) => a[0]! * (a[4]! * a[8]! - a[5]! * a[7]!) - a[1]! * (a[3]! * a[8]! - a[5]! * a[6]!) + a[2]! * (a[3]! * a[7]! - a[4]! * a[6]!);
  const d = det(m);
  const scale = Math.abs(m[0]! * m[4]! * m[8]!);
  if (!(Math.abs(d) > 1e-12 * scale)) return undefined;
  const column = (c: number) => m.map((x, i) => (i % 3 === c ? v[Math.floor(i / 3)]! : x));
  return [det(column(0)) / d, det(column(1)) / d, det(column(2)) / d];
}
