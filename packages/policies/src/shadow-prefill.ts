import type { Backend, CachePolicy, KvCache, PolicyEvent, PolicyResult, PolicyRow, RopeRegime, RopeSchedule, RowRewrite, WrapForwardOptions } from '@ropeswitch/core';
import { PolicyError, forwardWithRewrites, hasStaleKeys, lengthAfter, positionLimit } from '@ropeswitch/core';
import { rebuildRow } from './rebuild-row.js';
import { type ShadowCostModel, costModelOf, paceByCost, prefersCostPacing } from './shadow-pacing.js';
import { SequenceMirror } from './sequence-mirror.js';
import { concatIds } from './concat-ids.js';
import { type ShadowCopyFacts, type ShadowFacts, shadowState } from './shadow-states.js';

export interface ShadowPrefillOptions {
  /**
   * Start the shadow copy once the sequence is within this many tokens of the threshold (and its
   * planned length crosses it). Default: half the threshold, `ceil(threshold / 2)`: a prompt of up
   * to half the threshold leaves the copy to be spread over every step to the crossing (the wider
   * the window, the less each step carries: ≈ threshold / window + 1 tokens); a longer prompt lies
   * in the window and the copy is built with it. `window: threshold` builds the copy with any
   * prompt, so each decode step carries one copy token: the cheapest steps where a chunk costs a
   * read of the copy's cache per token (onnxruntime at the Phi-3-mini shape: 1.16–1.32× a plain
   * step, against 1.20–1.51× for the default's two), for a longer time to first token.
   */
  readonly window?: number;
  /**
   * Most tokens the shadow processes in one decode step, its catch-up and the new token together,
   * so no decode forward runs more than `chunk + 1` tokens per sequence. Within that bound each step
   * takes what keeps the copy on schedule for the crossing (its remaining tokens spread evenly over
   * the steps left), so a copy started on time runs ≈ threshold / window tokens a step and the bound
   * is slack for a copy that starts late. Default: `ceil(threshold / window) + 1`.
   */
  readonly chunk?: number;
  /**
   * How each decode step's share of the copy is sized. `'tokens'`: the copy's remaining tokens
   * spread evenly over the steps left. `'cost'`: its remaining cost, a token at position p costing
   * its pass through the weights plus its p keys of attention (the ratio of the two measured on
   * the steps run so far, from the model's shapes until then), spread so that every step, the
   * decode row included, costs about the same: more of the cheap early tokens while the decode
   * row is still short, fewer of the dear late ones. `'auto'` (default): `'cost'` where that model
   * says it lowers the slowest step by at least 10 % (long windows on attention-bound models),
   * else `'tokens'`. Under `'cost'` the default `chunk` is 16 times the even share, plus one.
   */
  readonly pacing?: 'auto' | 'cost' | 'tokens';
  /**
   * At a crossing the shadow has not caught up with (it started late, or `chunk` is too small):
   * `'catch-up'` (default) runs the rest in the crossing forward (exact, a bigger step); `'pass'`
   * hands the row on unchanged, e.g. to a `rerotate()` after this policy, and keeps building the
   * shadow in chunks, swapping it in once it has caught up (exact from then on). With `'pass'`, a
   * crossing with no copy at all (the plan said no crossing) starts one there.
   */
  readonly late?: 'catch-up' | 'pass';
}

/** A sequence's long-regime copy: it holds the sequence's first `shadow.length` tokens. */
interface Shadow {
  readonly cache: KvCache;
  readonly regime: RopeRegime;
  /** How its chunks are sized (decided when it starts, see {@link ShadowPrefillOptions.pacing}). */
  readonly pacing: 'cost' | 'tokens';
  /** The live sequence's tokens, kept beside it so a step reads (copies) neither cache. */
  readonly live: SequenceMirror;
  /** Whether the copy, once caught up, was left in the session's prefix cache. */
  shared: boolean;
}

/** A copy set up by the forward before the one that starts it (`shadowState`'s `'prepare'`). */
interface PreparedShadow {
  readonly shadow: Shadow;
  /** Tokens the copy took from the session's prefix cache (another sequence's copy), if any. */
  readonly prefixTokens: number | undefined;
}

/** A copy as {@link shadowState} sees it, beside the copy its state acts on. */
interface CopyFacts extends ShadowCopyFacts {
  readonly shadow: Shadow;
}

/**
 * Exact like {@link rePrefill}, without its latency spike. Once a sequence is within `window`
 * tokens of the threshold and its planned length crosses it, a copy of its cache is built under
 * the regime past the threshold, alongside the live one: during the prompt's forward when the
 * prompt already lies in the window (the cost lands in the time to first token), otherwise an even
 * share of it per decode step (at most `chunk` tokens), in the same forward as the decode row (one
 * pass over the weights on backends that batch rows). The forward that brings the sequence to the
 * window's start (a prompt of `threshold − window` tokens, or the decode step there) also sets the
 * copy up (its storage for the whole plan), so the step that starts it runs only its first chunk.
 * Each new token goes to both. At the crossing the copy is swapped in.
 *
 * Without a planned length the sequence is assumed to cross (pass `plannedLength` to spare the work
 * for sequences that stop early). Schedules that change at every step (dynamic NTK) have no single
 * next regime to prepare: there it behaves as {@link rePrefill}.
 */
export function shadowPrefill(options: ShadowPrefillOptions = {}): CachePolicy {
  checkOptions(options);
  return new ShadowPrefillPolicy(options);
}

/**
 * {@link shadowPrefill}'s policy. A class, not closures over the options: its methods are shared
 * by every instance, so the JIT's work on them carries over to a policy made per request. Closures
 * of a fresh factory call start cold (in Node 20 a loop of 6 µs warm took 190–1100 µs on a fresh
 * closure's first call, 5–50 µs as a fresh instance's method), and a copy's start and swap-in run
 * once per sequence, on the decode step that carries them.
 */
class ShadowPrefillPolicy implements CachePolicy {
  readonly name = 'shadow-prefill';
  /** At a crossing it swaps in or rebuilds (catch-up), or hands the row on as it is ('pass'). */
  readonly staleKeys: 'rebuild' | undefined;
  private readonly late: 'catch-up' | 'pass';
  private readonly shadows = new WeakMap<KvCache, Shadow>();
  /** Copies set up for the next forward of a sequence, which starts them (held one forward at most). */
  private readonly prepared = new WeakMap<KvCache, PreparedShadow>();
  /** The cost model of the backend this policy runs on, measured across its forwards. */
  private costs: ShadowCostModel | undefined;

  constructor(private readonly options: ShadowPrefillOptions) {
    this.late = options.late ?? 'catch-up';
    this.staleKeys = this.late === 'catch-up' ? 'rebuild' : undefined;
  }

  async wrapForward({ request, next, backend, schedule }: WrapForwardOptions): Promise<PolicyResult> {
    const rewrites = request.rows.map((row) => this.plan(row, backend, schedule));
    const costs = this.costs;
    if (!costs || !rewrites.some((r) => r?.extra)) return forwardWithRewrites(request, next, rewrites);
    // A step with shadow work: its time, against the tokens and attended keys it ran, refines the cost model.
    const started = performance.now();
    const result = await forwardWithRewrites(request, next, rewrites);
    costs.observe(request.rows, rewrites, performance.now() - started);
    return result;
  }

  releaseSequence(cache: KvCache): void {
    this.drop(cache);
    this.takePrepared(cache);
  }

  private windowOf(threshold: number): number {
    return this.options.window ?? Math.max(1, Math.ceil(threshold / 2));
  }

  /** Most tokens a step's chunk takes: the option, else the even share plus one (16 shares by cost). */
  private chunkFor(pacing: Shadow['pacing'], threshold: number): number {
    return this.options.chunk ?? (pacing === 'cost' ? 16 : 1) * Math.ceil(threshold / this.windowOf(threshold)) + 1;
  }

  /** The copy prepared for `cache`'s next forward, taken off the list: returned if `accept` takes it, else freed. */
  private takePrepared(cache: KvCache, accept?: (p: PreparedShadow) => boolean): PreparedShadow | undefined {
    const p = this.prepared.get(cache);
    if (!p) return undefined;
    this.prepared.delete(cache);
    if (accept?.(p) && !p.shadow.cache.disposed) return p;
    if (!p.shadow.cache.disposed) p.shadow.cache.dispose();
    return undefined;
  }

  private drop(cache: KvCache): void {
    const s = this.shadows.get(cache);
    if (!s) return;
    this.shadows.delete(cache);
    if (!s.cache.disposed) s.cache.dispose();
  }

  /** The sequence's copy if it still holds a prefix of it; one that does not is dropped (it counts as none). */
  private syncedShadow(cache: KvCache): Shadow | undefined {
    const shadow = this.shadows.get(cache);
    if (!shadow || inSync(shadow, cache)) return shadow;
    this.drop(cache);
    return undefined;
  }

  private plan(row: PolicyRow, backend: Backend, schedule: RopeSchedule): RowRewrite | undefined {
    const state = shadowState(this.factsOf(row, schedule));
    // A copy prepared for this forward serves only a start; any other state leaves it unused.
    if (state.kind !== 'start') this.takePrepared(row.cache);
    switch (state.kind) {
      case 'idle':
        return undefined;
      case 'prepare':
        return this.prepareShadow(row, schedule.regimeFor(state.threshold + 1), backend, state.threshold);
      case 'start':
        return this.startShadow(row, schedule.regimeFor(state.threshold + 1), backend, state.threshold);
      case 'building':
      case 'late':
        return this.buildChunk(row, state.copy.shadow, this.chunkFor(state.copy.shadow.pacing, state.threshold), [], state.threshold);
      case 'swap':
        return this.swapIn(row, state.copy.shadow);
      case 'late-start':
        // Nothing prepared (no plan to cross): start the copy now and let the row pass.
        this.drop(row.cache);
        return this.startShadow(row, row.regime, backend, state.threshold);
      case 'rebuild':
        if (state.reason === 'no-copy') this.drop(row.cache);
        return rebuildRow(row, row.regime, backend, this.name);
    }
  }

  /**
   * What {@link shadowState} decides on. Only a schedule with one crossing keeps copies: under the
   * others none is looked up (nor the regime past the threshold, which dynamic NTK computes per length).
   */
  private factsOf(row: PolicyRow, schedule: RopeSchedule): ShadowFacts<CopyFacts> {
    const { threshold, changesEveryStep } = schedule;
    if (threshold === undefined) return { threshold };
    const shadow = changesEveryStep ? undefined : this.syncedShadow(row.cache);
    return {
      threshold,
      changesEveryStep,
      window: this.windowOf(threshold),
      length: lengthAfter(row),
      stale: hasStaleKeys(row),
      plannedLength: row.plannedLength,
      late: this.late,
      regimeAhead: !changesEveryStep && schedule.regimeFor(threshold + 1).id !== row.regime.id,
      copy: shadow && { shadow, rowRegime: shadow.regime.id === row.regime.id, caughtUp: shadow.cache.length === row.cache.length },
    };
  }

  /**
   * A copy of the sequence under `regime`, with room for the whole plan (or the live cache's length
   * and this row), so neither its chunks nor the swap grow it; started from the session's prefix
   * cache where another sequence's copy shares a prefix of this one's cached tokens.
   */
  private newCopy(row: PolicyRow, regime: RopeRegime, backend: Backend, threshold: number, live: SequenceMirror): PreparedShadow {
    const costs = (this.costs ??= costModelOf(backend.config, backend.capabilities));
    const wanted = this.options.pacing ?? 'auto';
    const pacing = wanted === 'auto' ? (prefersCostPacing(costs, threshold) ? 'cost' : 'tokens') : wanted;
    const room = Math.max(lengthAfter(row), Math.min(row.plannedLength ?? 0, positionLimit(backend.config)));
    const seed = row.prefixes?.take(live.tokensFrom(0), { regime, maxLength: row.cache.length, capacity: room });
    const shadow: Shadow = { cache: seed ?? backend.createCache(), regime, pacing, live, shared: false };
    try {
      shadow.cache.reserve(room - shadow.cache.length);
    } catch (e) {
      shadow.cache.dispose();
      throw e;
    }
    return { shadow, prefixTokens: seed?.length };
  }

  /**
   * The row passes; once its forward succeeds, the copy the next forward starts is set up (cost
   * model, storage for the whole plan, the sequence's mirror): work that would otherwise land on
   * that decode step lands on this one (a prompt's, whose time to first token it barely moves).
   */
  private prepareShadow(row: PolicyRow, regime: RopeRegime, backend: Backend, threshold: number): RowRewrite {
    return {
      onSuccess: () => {
        // The live row is cached now: the mirror reads the sequence as the next forward finds it.
        try {
          this.prepared.set(row.cache, this.newCopy(row, regime, backend, threshold, SequenceMirror.of(row.cache)));
        } catch {
          // Storage at its limit: this forward succeeded all the same; the start sets the copy up
          // itself, and fails there as a forward does (every cache as it was).
        }
      },
    };
  }

  private startShadow(row: PolicyRow, regime: RopeRegime, backend: Backend, threshold: number): RowRewrite {
    // The copy the forward before set up, if the sequence is still as it left it and the regime the same.
    const ready = this.takePrepared(row.cache, (p) => p.shadow.regime.id === regime.id && p.shadow.live.matches(row.cache));
    const { shadow, prefixTokens } = ready ?? this.newCopy(row, regime, backend, threshold, SequenceMirror.of(row.cache));
    const chunk = this.chunkFor(shadow.pacing, threshold);
    // Kept only if the forward that starts it succeeds: a retry then starts (and reports) it again.
    const start: PolicyEvent = { type: 'shadow-start', policy: this.name, regime: regime.id, atLength: lengthAfter(row), ...(prefixTokens ? { prefixTokens } : {}) };
    const built = this.buildChunk(row, shadow, chunk, [start], threshold, true);
    return {
      ...built,
      onSuccess: () => {
        built.onSuccess?.();
        this.shadows.set(row.cache, shadow);
      },
      onFailure: () => shadow.cache.dispose(),
    };
  }

  /**
   * The row passes unchanged; the shadow's next piece runs beside it. Prompt rows build the whole
   * copy. The decode step that starts a copy carries the even token share only (it also sets the
   * copy up, unless the forward before did): pacing by cost takes over from the next step and
   * spreads what that left.
   */
  private buildChunk(row: PolicyRow, shadow: Shadow, chunk: number, events: PolicyEvent[], threshold: number, starting = false): RowRewrite {
    const costs = this.costs;
    const paced = shadow.pacing === 'cost' && costs !== undefined && !starting ? paceByCost(costs, lengthAfter(row), row.tokens.length, shadow.cache.length, threshold) : pace(row, shadow, threshold);
    const budget = row.prefill || row.cache.length === 0 ? Infinity : Math.min(chunk, paced);
    const extra = shadowChunk(row, shadow, budget);
    return {
      ...(extra ? { extra: [extra], doing: `${this.name}: a chunk of ${extra.tokens.length} tokens of the ${shadow.regime.id} copy` } : {}),
      events,
      onSuccess: () => {
        // The live row is cached now: the mirror follows.
        shadow.live.follow(row.cache, row.tokens, row.positions);
        // Caught up at the end of a prompt (or on a decode row): later sequences sharing this prefix
        // can start their copies from this one. Not on a prompt's inner chunk (no logits): a copy
        // caught up there would be shared short of the prompt, and later copies rebuild the rest.
        if (!shadow.shared && row.prefixes && shadow.cache.length === row.cache.length && (row.logits ?? 1) > 0) {
          shadow.shared = true;
          row.prefixes.put(shadow.cache);
        }
      },
    };
  }

  private swapIn(row: PolicyRow, shadow: Shadow): RowRewrite {
    const lag = row.cache.length - shadow.cache.length;
    const lagging = lag > 0;
    const tokens = lagging ? concatIds(row.cache.tokens().subarray(shadow.cache.length), row.tokens) : row.tokens;
    const positions = lagging ? concatIds(row.cache.positions().subarray(shadow.cache.length), row.positions) : row.positions;
    return {
      row: { ...row, tokens, positions, cache: shadow.cache, regime: shadow.regime },
      onSuccess: () => {
        this.shadows.delete(row.cache);
        row.cache.replaceWith(shadow.cache);
      },
      doing: `${this.name}: swap-in of the ${shadow.regime.id} copy (${lag} tokens to catch up)`,
      events: [{ type: 'shadow-swap', policy: this.name, regime: shadow.regime.id, catchUpTokens: lag, atLength: lengthAfter(row) }],
    };
  }
}

/**
 * Tokens the shadow needs this step to hold the whole sequence by the crossing, its remaining
 * tokens spread evenly over the forwards left before it (each assumed to add as many tokens as
 * this row): no more work up front than the crossing needs, so on a model whose weights dominate a
 * step, no step carries more than the decode row and ≈ threshold / window shadow tokens. Past the
 * threshold (a late copy) there is no schedule: as many as `chunk` allows.
 */
function pace(row: PolicyRow, shadow: Shadow, threshold: number): number {
  const S = lengthAfter(row);
  if (S > threshold) return Infinity;
  const forwardsLeft = Math.ceil((threshold - S) / row.tokens.length) + 1;
  return Math.max(1, Math.ceil((threshold - shadow.cache.length) / forwardsLeft));
}

/**
 * The next piece of the shadow: the sequence's tokens from where the shadow stops (cached ones, from
 * the mirror, then the row's new ones), at most `budget` of them, under the shadow's regime, no logits.
 */
function shadowChunk(row: PolicyRow, shadow: Shadow, budget: number): PolicyRow | undefined {
  const from = shadow.cache.length;
  const tokens = concatIds(shadow.live.tokensFrom(from), row.tokens);
  const positions = concatIds(shadow.live.positionsFrom(from), row.positions);
  const n = Math.min(budget, tokens.length);
  if (n === 0) return undefined;
  return { tokens: tokens.subarray(0, n), positions: positions.subarray(0, n), cache: shadow.cache, regime: shadow.regime, logits: 0 };
}

/**
 * Whether the shadow still holds a prefix of the sequence (a caller may have cropped or rebuilt it);
 * crops a shadow that ran ahead (its chunk ran in a forward whose live row failed). A cache nobody
 * touched since this policy's last forward (its revision unchanged) needs no reading; otherwise the
 * two are compared token by token and the mirror is read again.
 */
function inSync(shadow: Shadow, cache: KvCache): boolean {
  if (shadow.cache.disposed) return false;
  if (shadow.cache.length > cache.length) shadow.cache.crop(cache.length);
  if (shadow.live.matches(cache)) return true;
  const a = shadow.cache.tokens();
  const b = cache.tokens();
  const pa = shadow.cache.positions();
  const pb = cache.positions();
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] || pa[i] !== pb[i]) return false;
  shadow.live.read(cache);
  return true;
}

function checkOptions(options: ShadowPrefillOptions): void {
  const { window, chunk, late } = options;
  if (window !== undefined && (!Number.isInteger(window) || window < 1)) {
    throw new PolicyError('bad-option', `shadowPrefill: window must be a positive integer; got ${window}`);
  }
  if (chunk !== undefined && (!Number.isInteger(chunk) || chunk < 1)) {
    throw new PolicyError('bad-option', `shadowPrefill: chunk must be a positive integer; got ${chunk}`);
  }
  if (late !== undefined && late !== 'catch-up' && late !== 'pass') {
    throw new PolicyError('bad-option', `shadowPrefill: late must be 'catch-up' or 'pass'; got ${String(late)}`);
  }
  if (options.pacing !== undefined && options.pacing !== 'auto' && options.pacing !== 'cost' && options.pacing !== 'tokens') {
    throw new PolicyError('bad-option', `shadowPrefill: pacing must be 'auto', 'cost' or 'tokens'; got ${String(options.pacing)}`);
  }
  if (late === 'pass' && chunk !== undefined && chunk < 2) {
    // A chunk of one only keeps pace with the new token: a late copy would never catch up.
    throw new PolicyError('bad-option', `shadowPrefill: with late 'pass', chunk must be at least 2 so a late copy can catch up; got ${chunk}`);
  }
}
