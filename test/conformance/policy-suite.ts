/**
 * Policy conformance: every cache policy on every HF fixture (`test/fixtures/hf/`), against HF
 * transformers' recorded outputs and the no-cache oracle. Backend-neutral: a backend runs it with
 * its own `open`, e.g.
 *
 * ```ts
 * describePolicyConformance('reference', async (dir) => {
 *   const { config, weights } = await loadCheckpoint(dir);
 *   return new ReferenceBackend(config, weights);
 * });
 * ```
 *
 * Step numbering follows the fixtures: step 0 is the prompt's forward (total length S = prompt
 * length), step i feeds generated token i − 1 (S = prompt + i); the crossing step is the first
 * with S > threshold (`greedy_hf.crossing_step`, or `threshold_step` for dynamic NTK).
 *
 * Prompts of `largePrompt` tokens or more (`seed5-phi3-real-threshold`: 4090 tokens, a few seconds
 * per prefill on a CPU backend) get the checks that need the real threshold: rePrefill,
 * shadowPrefill, stale and warnOnly against HF. Every other check runs on the small cases.
 */
import { readFileSync } from 'node:fs';
import {
  type Backend,
  type CachePolicy,
  type PolicyEvent,
  type RopeSchedule,
  RopeswitchError,
  Session,
  createRopeSchedule,
  generate,
  greedyNoCache,
  noCacheForward,
  parseModelConfig,
  wrapBackend,
} from '@ropeswitch/core';
import { POLICY_NAMES, policyByName, preEstimate, rePrefill, rerotate, shadowPrefill, stale, warnOnly } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HfExpected, hfCases, hfDir, inputIds, maxAbsDiff, readExpected } from '../support/fixtures.js';
import { klDivergence, mean } from '../../packages/cli/src/index.js';
import { InjectedFault, type ProbeOptions, type RecordedCall, probeBackend } from '../support/probe-backend.js';
import {
  type GreedyTrace,
  type LayerKeyReader,
  SteppedSequence,
  batchedGreedy,
  crossingStepOf,
  freshPrefill,
  pinnedSchedule,
  readCpuLayerKeys,
  snapshotCache,
  worstStepDiff,
} from './policy-runs.js';

export interface PolicyConformanceOptions {
  /** Max |Δ logit| against HF and the oracle (default 1e-4: the fixtures' documented tolerance). */
  readonly logitTolerance?: number;
  /** Max |Δ| between rerotated layer-0 keys and a fresh prefill's (default 1e-5). */
  readonly keyTolerance?: number;
  /** Fixture cases to run (default: every folder of `test/fixtures/hf/`). */
  readonly cases?: readonly string[];
  /** Reads a cache's keys (default: CPU caches only). GPU backends pass their readback. */
  readonly readLayerKeys?: LayerKeyReader;
  /** Prompts at least this long get only the real-threshold checks (default 1024). */
  readonly largePrompt?: number;
}

/** Registers the conformance suite for one backend. `open` loads a fixture folder (HF layout) into a backend. */
export function describePolicyConformance(
  label: string,
  open: (checkpointDir: string) => Promise<Backend>,
  options: PolicyConformanceOptions = {},
): void {
  const settings: Settings = {
    tol: options.logitTolerance ?? 1e-4,
    keyTol: options.keyTolerance ?? 1e-5,
    readLayerKeys: options.readLayerKeys ?? readCpuLayerKeys,
  };
  const largePrompt = options.largePrompt ?? 1024;
  describe(`policy conformance (${label})`, () => {
    for (const name of options.cases ?? hfCases()) {
      describe(name, () => {
        const e = readExpected(name);
        // The schedule comes from the fixture's config (tests are declared before any backend opens).
        const config = parseModelConfig(JSON.parse(readFileSync(`${hfDir}${name}/config.json`, 'utf8')));
        const ctx = { e, schedule: createRopeSchedule(config.rope) } as CaseContext;
        beforeAll(async () => {
          ctx.backend = await open(`${hfDir}${name}`);
        });
        afterAll(async () => {
          await ctx.backend?.dispose();
        });
        const dynamic = e.greedy_oracle !== undefined;
        if (dynamic) describeDynamic(ctx, settings);
        else describeLongRope(ctx, settings, e.prompt.length >= largePrompt);
        if (e.prompt.length < largePrompt) describeCommon(ctx, settings, dynamic);
      });
    }
  });
}

interface Settings {
  readonly tol: number;
  readonly keyTol: number;
  readonly readLayerKeys: LayerKeyReader;
}

/** One fixture case; `backend` is opened by the case's `beforeAll`. */
interface CaseContext {
  readonly e: HfExpected;
  readonly schedule: RopeSchedule;
  backend: Backend;
}

// ---------------------------------------------------------------------------------------------
// Shared checks

function expectLogitsClose(actual: readonly Float32Array[], expected: readonly ArrayLike<number>[], tol: number, what: string): void {
  expect(actual.length, `${what}: steps`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    expect(maxAbsDiff(actual[i]!, expected[i]!), `${what}: step ${i}`).toBeLessThanOrEqual(tol);
  }
}

function threshold(ctx: CaseContext): number {
  const t = ctx.schedule.threshold;
  if (t === undefined) throw new Error(`${ctx.e.case}: a static schedule has no threshold`);
  return t;
}

/** Greedy run of `maxNewTokens` through `generate` on a session (left open for inspection; the caller disposes it). */
async function greedyOn(backend: Backend, prompt: readonly number[], maxNewTokens: number) {
  const session = new Session(backend);
  const result = await generate(session, prompt, { maxNewTokens });
  return { session, result };
}

/** A greedy run through `wrapBackend(probe, policy)`, with the backend calls made after the prompt's forward. */
async function probedGreedy(ctx: CaseContext, policy: CachePolicy, prompt: readonly number[], maxNewTokens: number) {
  const probe = probeBackend(ctx.backend);
  const session = new Session(wrapBackend(probe, policy));
  let promptCalls = 0;
  const result = await generate(session, prompt, {
    maxNewTokens,
    onToken: (_token, step) => {
      if (step === 0) promptCalls = probe.calls.length;
    },
  });
  const decodeCalls = probe.calls.slice(promptCalls);
  return { session, result, probe, promptCalls: probe.calls.slice(0, promptCalls), decodeCalls };
}

/** `greedy_hf.forward_calls` (untyped in support/fixtures.ts): each forward of HF's generate(). */
interface HfForwardCall {
  readonly input_len: number;
  readonly cache_len_before: number;
}
function hfForwardCalls(e: HfExpected): readonly HfForwardCall[] {
  return (e.greedy_hf as { forward_calls?: HfForwardCall[] }).forward_calls ?? [];
}

function maxTokensPerCall(calls: readonly RecordedCall[]): number {
  return Math.max(0, ...calls.map((c) => c.tokens));
}

function eventSummary(events: readonly PolicyEvent[]): string[] {
  return events.map((ev) => `${ev.type}@${ev.atLength}`);
}

/** The shadow policy's expected defaults for a threshold T: window ⌈T/2⌉, chunk ⌈T/window⌉ + 1. */
function shadowDefaults(T: number): { window: number; chunk: number } {
  const window = Math.max(1, Math.ceil(T / 2));
  return { window, chunk: Math.ceil(T / window) + 1 };
}

/** A prompt that ends `before` tokens ahead of the threshold, from the fixture's long input ids, and the tokens after it. */
function slicePrompt(ctx: CaseContext, before: number): { prompt: number[]; rest: number[] } {
  const source = inputIds(ctx.e, ctx.e.full_forward_long);
  const cut = threshold(ctx) - before;
  return { prompt: source.slice(0, cut), rest: source.slice(cut) };
}

// ---------------------------------------------------------------------------------------------
// LongRoPE cases: HF's generate() re-prefills once at the crossing; greedy_stale keeps the cache.

function describeLongRope(ctx: CaseContext, s: Settings, large: boolean): void {
  const { e } = ctx;
  const maxNew = e.greedy_hf.max_new_tokens;
  const crossing = crossingStepOf(e);
  const staleRun = e.greedy_stale!;
  /** Events at the crossing step (none when the case never crosses). */
  const atCrossing = crossing === undefined ? [] : [e.prompt.length + crossing];

  it('rePrefill reproduces HF generate(): tokens, logits at every step, its forward calls, one re-prefill at the crossing', async () => {
    const { session, result, probe } = await probedGreedy(ctx, rePrefill(), e.prompt, maxNew);
    expect(result.tokens).toEqual(e.greedy_hf.tokens);
    expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, 'rePrefill vs greedy_hf');
    // HF's generate() dropped the cache and ran all S tokens at the crossing: the same calls here.
    const hfCalls = hfForwardCalls(e).map((c) => [c.input_len, c.cache_len_before]);
    expect(hfCalls).toHaveLength(maxNew);
    expect(probe.calls.map((c) => [c.tokens, c.rows[0]!.cached])).toEqual(hfCalls);
    expect(eventSummary(session.events)).toEqual(atCrossing.map((S) => `re-prefill@${S}`));
    for (const ev of session.events) if (ev.type === 're-prefill') expect(ev.tokens).toBe(ev.atLength);
    expect(session.cache.uniformRegime()?.id).toBe(ctx.schedule.regimeFor(session.length).id);
    session.dispose();
  });

  const shadowInPrefill = (label: string, make: () => { policy: CachePolicy; chunk: number; window: number }) =>
    it(`shadowPrefill(${label}) reproduces HF generate(), at most chunk + 1 tokens per decode forward`, async () => {
      const { policy, chunk, window } = make();
      const T = threshold(ctx);
      const { session, result, promptCalls, decodeCalls } = await probedGreedy(ctx, policy, e.prompt, maxNew);
      expect(result.tokens).toEqual(e.greedy_hf.tokens);
      expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, `shadowPrefill(${label}) vs greedy_hf`);
      expect(maxTokensPerCall(decodeCalls)).toBeLessThanOrEqual(chunk + 1);
      if (crossing === undefined) {
        expect(session.events).toEqual([]);
      } else {
        // The prompt lies inside the window: the long copy is built in the prompt's forward, as a
        // second row on another cache, and is complete at the crossing.
        expect(e.prompt.length).toBeGreaterThan(T - window);
        expect(promptCalls).toHaveLength(1);
        expect(promptCalls[0]!.rows.filter((r) => r.cache !== session.cache).map((r) => r.tokens)).toEqual([e.prompt.length]);
        expect(eventSummary(session.events)).toEqual([`shadow-start@${e.prompt.length}`, `shadow-swap@${T + 1}`]);
        const swap = session.events.find((ev) => ev.type === 'shadow-swap');
        expect(swap?.type === 'shadow-swap' && swap.catchUpTokens).toBe(0);
      }
      session.dispose();
    });
  shadowInPrefill('{ window, chunk }', () => {
    const window = Math.max(4, threshold(ctx) - e.prompt.length + 4);
    return { policy: shadowPrefill({ window, chunk: 3 }), window, chunk: 3 };
  });
  shadowInPrefill('defaults', () => ({ policy: shadowPrefill(), ...shadowDefaults(threshold(ctx)) }));

  it('stale reproduces the HF custom loop that keeps the cache (greedy_stale)', async () => {
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, stale()), e.prompt, maxNew);
    expect(result.tokens).toEqual(staleRun.tokens);
    expectLogitsClose(result.logits, staleRun.logits, s.tol, 'stale vs greedy_stale');
    expect(session.events).toEqual([]);
    session.dispose();
  });

  it('warnOnly reproduces greedy_stale and reports exactly one rope-regime-change, at the crossing', async () => {
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, warnOnly()), e.prompt, maxNew);
    expect(result.tokens).toEqual(staleRun.tokens);
    expectLogitsClose(result.logits, staleRun.logits, s.tol, 'warnOnly vs greedy_stale');
    expect(eventSummary(session.events)).toEqual(atCrossing.map((S) => `rope-regime-change@${S}`));
    for (const ev of session.events) {
      expect(ev).toMatchObject({ type: 'rope-regime-change', policy: 'warn-only', from: ctx.schedule.regimeFor(1).id, to: ctx.schedule.regimeFor(threshold(ctx) + 1).id });
    }
    session.dispose();
  });

  if (large) return;

  for (const [label, make] of [
    ['rePrefill', rePrefill],
    ['shadowPrefill()', () => shadowPrefill()],
  ] as const) {
    it(`${label} with the prompt prefilled in chunks of 5 reproduces HF generate()`, async () => {
      const session = new Session(wrapBackend(ctx.backend, make()));
      const result = await generate(session, e.prompt, { maxNewTokens: maxNew, chunkSize: 5 });
      expect(result.tokens).toEqual(e.greedy_hf.tokens);
      expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, `${label}, chunked prompt, vs greedy_hf`);
      expect(session.cache.uniformRegime()?.id).toBe(ctx.schedule.regimeFor(session.length).id);
      session.dispose();
    });
  }

  if (crossing !== undefined) {
    it('shadowPrefill builds the copy in chunks during decode when the prompt is outside the window, swaps at the crossing with nothing to catch up', async () => {
      const T = threshold(ctx);
      const { prompt } = slicePrompt(ctx, 12);
      const window = 10;
      const chunk = 4;
      const oracle = await greedyNoCache(ctx.backend, prompt, { maxNewTokens: maxNew });
      const { session, result, promptCalls, decodeCalls } = await probedGreedy(ctx, shadowPrefill({ window, chunk }), prompt, maxNew);
      expect(result.tokens).toEqual(oracle.tokens);
      expectLogitsClose(result.logits, oracle.logits, s.tol, 'shadowPrefill vs no-cache oracle');
      expect(promptCalls.flatMap((c) => c.rows)).toHaveLength(1); // nothing shadowed during the prompt
      expect(maxTokensPerCall(decodeCalls)).toBe(chunk + 1); // the bound holds and is reached
      expect(eventSummary(session.events)).toEqual([`shadow-start@${T - window + 1}`, `shadow-swap@${T + 1}`]);
      const swap = session.events.find((ev) => ev.type === 'shadow-swap');
      expect(swap?.type === 'shadow-swap' && swap.catchUpTokens).toBe(0);
      session.dispose();
    });

    it('shadowPrefill whose copy cannot catch up in time finishes it in the crossing forward, still exact', async () => {
      const { prompt } = slicePrompt(ctx, 12);
      const oracle = await greedyNoCache(ctx.backend, prompt, { maxNewTokens: maxNew });
      const { session, result } = await probedGreedy(ctx, shadowPrefill({ window: 4, chunk: 1 }), prompt, maxNew);
      expect(result.tokens).toEqual(oracle.tokens);
      expectLogitsClose(result.logits, oracle.logits, s.tol, 'late shadowPrefill vs no-cache oracle');
      const swap = session.events.find((ev) => ev.type === 'shadow-swap');
      expect(swap?.type === 'shadow-swap' && swap.catchUpTokens).toBeGreaterThan(0);
      session.dispose();
    });

    it('rerotate: after the crossing, layer-0 keys equal a fresh long-regime prefill (deeper layers do not)', async () => {
      const session = new Session(wrapBackend(ctx.backend, rerotate()));
      await session.prefill(e.prompt, { plannedLength: e.prompt.length + maxNew });
      for (let step = 1; step <= crossing; step++) await session.forward([e.greedy_hf.tokens[step - 1]!]);
      const S = threshold(ctx) + 1;
      expect(session.length).toBe(S);
      expect(eventSummary(session.events)).toEqual([`rerotate@${S}`]);
      const long = ctx.schedule.regimeFor(S);
      expect(session.cache.uniformRegime()?.id).toBe(long.id);
      const fresh = await freshPrefill(ctx.backend, session.tokens(), long);
      const layer0 = maxAbsDiff(await s.readLayerKeys(session.cache, 0), await s.readLayerKeys(fresh, 0));
      expect(layer0).toBeLessThanOrEqual(s.keyTol);
      const last = session.cache.layout.numLayers - 1;
      if (last > 0) expect(maxAbsDiff(await s.readLayerKeys(session.cache, last), await s.readLayerKeys(fresh, last))).toBeGreaterThan(s.keyTol);
      fresh.dispose();
      session.dispose();
    });

    it("rerotate: teacher-forced on HF's tokens, mean KL(HF ‖ ours) after the crossing is below stale's", async () => {
      const forced = async (policy: CachePolicy) =>
        (await generate(wrapBackend(ctx.backend, policy), e.prompt, { maxNewTokens: maxNew, teacherTokens: e.greedy_hf.tokens })).logits;
      const rotated = await forced(rerotate());
      const kept = await forced(stale());
      // Before the crossing nothing is stale: both are HF's logits.
      expectLogitsClose(rotated.slice(0, crossing), e.greedy_hf.logits.slice(0, crossing), s.tol, 'rerotate before the crossing');
      const kl = (logits: Float32Array[]) => mean(e.greedy_hf.logits.slice(crossing).map((hf, i) => klDivergence(hf, logits[crossing + i]!)));
      const klRotated = kl(rotated);
      const klStale = kl(kept);
      expect(klStale).toBeGreaterThan(0.01);
      expect(klRotated).toBeLessThan(klStale);
    });
  } else {
    it('rerotate never fires on a sequence that stays short: HF generate() exactly', async () => {
      const { session, result } = await greedyOn(wrapBackend(ctx.backend, rerotate()), e.prompt, maxNew);
      expect(result.tokens).toEqual(e.greedy_hf.tokens);
      expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, 'rerotate vs greedy_hf');
      expect(session.events).toEqual([]);
      session.dispose();
    });
  }

  it('preEstimate: long regime from the first token when the plan crosses; every step equals a no-cache forward under the planned regime', async () => {
    const planned = e.prompt.length + maxNew;
    const regime = ctx.schedule.regimeFor(planned);
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, preEstimate()), e.prompt, maxNew);
    const oracle = pinnedSchedule(ctx.schedule, regime);
    for (let step = 0; step < maxNew; step++) {
      const ids = [...e.prompt, ...result.tokens.slice(0, step)];
      const expected = await noCacheForward(ctx.backend, ids, { schedule: oracle });
      expect(maxAbsDiff(result.logits[step]!, expected), `step ${step}`).toBeLessThanOrEqual(s.tol);
    }
    if (crossing === undefined) {
      expect(result.tokens).toEqual(e.greedy_hf.tokens);
      expect(session.events).toEqual([]);
    } else {
      expect(session.events).toEqual([{ type: 'pre-estimate', policy: 'pre-estimate', regime: regime.id, plannedLength: planned, atLength: e.prompt.length }]);
    }
    expect(session.cache.uniformRegime()?.id).toBe(regime.id);
    session.dispose();
  });
}

// ---------------------------------------------------------------------------------------------
// Dynamic NTK: the frequencies change at every step past the threshold. HF generate() keeps the
// stale cache (greedy_hf); greedy_oracle is what an exact recompute generates.

function describeDynamic(ctx: CaseContext, s: Settings): void {
  const { e } = ctx;
  const maxNew = e.greedy_hf.max_new_tokens;
  const first = crossingStepOf(e)!;
  const oracleRun = e.greedy_oracle!;
  /** Total lengths of the steps past the threshold. */
  const pastThreshold = Array.from({ length: maxNew - first }, (_, i) => e.prompt.length + first + i);

  const exact = (label: string, make: () => CachePolicy) =>
    it(`${label} equals the no-cache oracle run (greedy_oracle), re-prefilling at every step past the threshold`, async () => {
      const { session, result } = await greedyOn(wrapBackend(ctx.backend, make()), e.prompt, maxNew);
      expect(result.tokens).toEqual(oracleRun.tokens);
      expectLogitsClose(result.logits, oracleRun.logits, s.tol, `${label} vs greedy_oracle`);
      expect(eventSummary(session.events)).toEqual(pastThreshold.map((S) => `re-prefill@${S}`));
      session.dispose();
    });
  exact('rePrefill', rePrefill);
  // No single next regime to prepare: the shadow policy documents that it behaves as rePrefill.
  exact('shadowPrefill({ window, chunk })', () => shadowPrefill({ window: 8, chunk: 3 }));
  exact('shadowPrefill()', () => shadowPrefill());

  it('stale reproduces HF generate() (which keeps each key under its step\'s frequencies)', async () => {
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, stale()), e.prompt, maxNew);
    expect(result.tokens).toEqual(e.greedy_hf.tokens);
    expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, 'stale vs greedy_hf');
    expect(session.events).toEqual([]);
    session.dispose();
  });

  it('warnOnly reproduces HF generate() and reports a rope-regime-change at every step past the threshold', async () => {
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, warnOnly()), e.prompt, maxNew);
    expect(result.tokens).toEqual(e.greedy_hf.tokens);
    expectLogitsClose(result.logits, e.greedy_hf.logits, s.tol, 'warnOnly vs greedy_hf');
    expect(session.events).toEqual(
      pastThreshold.map((S) => ({ type: 'rope-regime-change', policy: 'warn-only', from: ctx.schedule.regimeFor(S - 1).id, to: ctx.schedule.regimeFor(S).id, atLength: S })),
    );
    session.dispose();
  });

  it('preEstimate: every step equals a no-cache forward under the regime of the planned length', async () => {
    const planned = e.prompt.length + maxNew;
    const regime = ctx.schedule.regimeFor(planned);
    const { session, result } = await greedyOn(wrapBackend(ctx.backend, preEstimate()), e.prompt, maxNew);
    const oracle = pinnedSchedule(ctx.schedule, regime);
    for (let step = 0; step < maxNew; step++) {
      const expected = await noCacheForward(ctx.backend, [...e.prompt, ...result.tokens.slice(0, step)], { schedule: oracle });
      expect(maxAbsDiff(result.logits[step]!, expected), `step ${step}`).toBeLessThanOrEqual(s.tol);
    }
    expect(eventSummary(session.events)).toEqual([`pre-estimate@${e.prompt.length}`]);
    expect(session.cache.uniformRegime()?.id).toBe(regime.id);
    session.dispose();
  });

  it('rerotate: after every step past the threshold, layer-0 keys equal a fresh prefill under that step\'s regime', async () => {
    const session = new Session(wrapBackend(ctx.backend, rerotate()));
    await session.prefill(e.prompt, { plannedLength: e.prompt.length + maxNew });
    for (let step = 1; step < maxNew; step++) {
      await session.forward([oracleRun.tokens[step - 1]!]);
      if (step < first) continue;
      const regime = ctx.schedule.regimeFor(session.length);
      expect(session.cache.uniformRegime()?.id).toBe(regime.id);
      const fresh = await freshPrefill(ctx.backend, session.tokens(), regime);
      expect(maxAbsDiff(await s.readLayerKeys(session.cache, 0), await s.readLayerKeys(fresh, 0)), `step ${step}`).toBeLessThanOrEqual(s.keyTol);
      fresh.dispose();
    }
    expect(eventSummary(session.events)).toEqual(pastThreshold.map((S) => `rerotate@${S}`));
    session.dispose();
  });

  it('rerotate: teacher-forced, mean KL(oracle ‖ ours) past the threshold is below stale\'s', async () => {
    const forced = e.oracle_teacher_forced!;
    const run = async (policy: CachePolicy) =>
      (await generate(wrapBackend(ctx.backend, policy), e.prompt, { maxNewTokens: maxNew, teacherTokens: forced.tokens })).logits;
    const kl = (logits: Float32Array[]) => mean(forced.logits.slice(first).map((o, i) => klDivergence(o, logits[first + i]!)));
    const klRotated = kl(await run(rerotate()));
    const klStale = kl(await run(stale()));
    expect(klRotated).toBeLessThan(klStale);
  });
}

// ---------------------------------------------------------------------------------------------
// Every small case: chunked prefill, isolation between sequences, faults and aborts.

function describeCommon(ctx: CaseContext, s: Settings, dynamic: boolean): void {
  const { e } = ctx;
  const maxNew = e.greedy_hf.max_new_tokens;

  describe('chunked prefill of a prompt longer than the threshold: one regime for every chunk', () => {
    const plans = [
      { label: 'no planned length', plan: false },
      { label: 'planned length = prompt', plan: true },
    ];
    for (const name of POLICY_NAMES) {
      for (const { label, plan } of plans) {
        it(`${name}, ${label}: every position's logits equal a one-shot prefill's (and HF's), one regime span`, async () => {
          const ids = inputIds(e, e.full_forward_long);
          expect(ids.length).toBeGreaterThan(threshold(ctx));
          const options = { logits: ids.length, ...(plan ? { plannedLength: ids.length } : {}) };
          const oneShot = new Session(wrapBackend(ctx.backend, policyByName(name)));
          const whole = await oneShot.prefill(ids, options);
          const chunked = new Session(wrapBackend(ctx.backend, policyByName(name)));
          const parts = await chunked.prefill(ids, { ...options, chunkSize: 7 });
          expect(maxAbsDiff(parts, whole)).toBeLessThanOrEqual(s.tol);
          expect(eventSummary(chunked.events)).toEqual(eventSummary(oneShot.events));
          const V = ctx.backend.config.vocabSize;
          const k = e.full_forward_long.positions.length;
          expect(maxAbsDiff(parts.subarray((ids.length - k) * V), e.full_forward_long.logits.flat())).toBeLessThanOrEqual(s.tol);
          const spans = chunked.cache.regimeSpans().map((sp) => ({ start: sp.start, end: sp.end, regime: sp.regime.id }));
          expect(spans).toEqual([{ start: 0, end: ids.length, regime: ctx.schedule.regimeFor(ids.length).id }]);
          oneShot.dispose();
          chunked.dispose();
        });
      }
    }
  });

  describe('isolation: sequences sharing one wrapped backend, crossing at different steps', () => {
    const policies: [string, () => CachePolicy][] = [
      ...POLICY_NAMES.map((n): [string, () => CachePolicy] => [n, () => policyByName(n)]),
      ['shadow-prefill { window: 10, chunk: 4 }', () => shadowPrefill({ window: 10, chunk: 4 })],
    ];
    /** Prompt A is the fixture's; prompt B ends 8 tokens before the threshold, so it crosses later. */
    const prompts = () => [e.prompt, slicePrompt(ctx, 8).prompt];
    const alone = async (make: () => CachePolicy): Promise<SteppedSequence[]> => {
      const out: SteppedSequence[] = [];
      for (const p of prompts()) out.push(await new SteppedSequence(wrapBackend(ctx.backend, make()), p, maxNew).run());
      return out;
    };
    const expectSame = (got: readonly GreedyTrace[], want: readonly GreedyTrace[], tol: number) => {
      got.forEach((g, i) => {
        expect(g.tokens, `sequence ${i}`).toEqual(want[i]!.tokens);
        expect(worstStepDiff(g.logits, want[i]!.logits), `sequence ${i}`).toBeLessThanOrEqual(tol);
        expect(g.events, `sequence ${i}`).toEqual(want[i]!.events);
      });
    };

    for (const [name, make] of policies) {
      it(`${name}: interleaved step by step, and concurrently, each sequence gets exactly what it gets alone`, async () => {
        const want = await alone(make);
        expect(want[0]!.tokens).not.toEqual(want[1]!.tokens);
        for (const mode of ['interleaved', 'concurrent'] as const) {
          const shared = wrapBackend(ctx.backend, make());
          const seqs = prompts().map((p) => new SteppedSequence(shared, p, maxNew));
          while (!seqs.every((q) => q.done)) {
            if (mode === 'interleaved') for (const q of seqs) await q.step();
            else await Promise.all(seqs.map((q) => q.step()));
          }
          expectSame(seqs, want, 0);
          for (const q of seqs) q.session.dispose();
        }
        for (const q of want) q.session.dispose();
      });

      it(`${name}: batched as rows of one request, each row gets what its sequence gets alone`, async () => {
        const want = await alone(make);
        const got = await batchedGreedy(wrapBackend(ctx.backend, make()), ctx.schedule, prompts(), maxNew);
        expectSame(got, want, s.tol);
        for (const q of want) q.session.dispose();
      });
    }
  });

  describe('faults: a failing or aborted backend call leaves the cache as it was, and the next forward is exact', () => {
    for (const scenario of faultScenarios(ctx, dynamic)) {
      for (const mode of ['throw', 'abort'] as const) {
        it(`${scenario.title} (${mode === 'throw' ? 'backend throws' : 'signal aborted'})`, async () => {
          await runFaultScenario(ctx, s, scenario, mode);
        });
      }
    }
  });
}

interface FaultScenario {
  readonly policy: () => CachePolicy;
  /** Options of the probe under the chain (e.g. a backend that takes one row per call). */
  readonly probe?: ProbeOptions;
  readonly prompt: readonly number[];
  /** Tokens fed after the prompt, one per step. */
  readonly feed: readonly number[];
  readonly plannedLength?: number;
  /** Steps to run (0 = the prompt's forward). */
  readonly steps: number;
  /** The step whose forward fails. */
  readonly failStep: number;
  /** Which backend call of that step fails: the first that `hits` (so the fault hits the intended work). */
  readonly hits: (call: RecordedCall, session: Session) => boolean;
  /** Oracle regime, when not the regime of each step's total length. */
  readonly oracleSchedule?: RopeSchedule;
}

/** Rows that recompute more than the new token of one sequence (a re-prefill or a catch-up). */
const recomputes = (call: RecordedCall, session: Session): boolean => call.rows.some((r) => r.tokens > 1 && r.cached === 0 && r.cache !== session.cache);
/** A shadow chunk: a row on another cache than the session's, asking no logits. */
const shadowChunk = (call: RecordedCall, session: Session): boolean => call.rows.some((r) => r.cache !== session.cache && r.logits === 0);
/** The swap: the decode row itself runs on the shadow's cache. */
const swapRow = (call: RecordedCall, session: Session): boolean => call.rows.length === 1 && call.rows[0]!.cache !== session.cache && call.rows[0]!.logits > 0;
/** A call that runs the session's own row (on a one-row backend: after the step's shadow chunk ran). */
const ownRow = (call: RecordedCall, session: Session): boolean => call.rows.some((r) => r.cache === session.cache);

function faultScenarios(ctx: CaseContext, dynamic: boolean): (FaultScenario & { readonly title: string })[] {
  const { e } = ctx;
  const maxNew = e.greedy_hf.max_new_tokens;
  const crossing = crossingStepOf(e);
  const feed = (dynamic ? e.greedy_oracle! : e.greedy_hf).tokens;
  const planned = e.prompt.length + maxNew;
  const preEstimatePrefill = {
    title: "preEstimate: the prompt's forward under the planned regime fails",
    policy: preEstimate,
    prompt: e.prompt,
    feed,
    plannedLength: planned,
    steps: 4,
    failStep: 0,
    hits: (call: RecordedCall) => call.rows.length === 1 && call.rows[0]!.regime === ctx.schedule.regimeFor(planned).id,
    oracleSchedule: pinnedSchedule(ctx.schedule, ctx.schedule.regimeFor(planned)),
  };
  if (crossing === undefined) {
    return [{ title: 'rePrefill: a decode forward fails', policy: rePrefill, prompt: e.prompt, feed, steps: maxNew, failStep: 3, hits: () => true }, preEstimatePrefill];
  }
  // Dynamic NTK re-prefills at every step past the threshold: fail a later one.
  const reprefillStep = dynamic ? crossing + 2 : crossing;
  const atReprefill = (policy: () => CachePolicy, who: string, plannedLength?: number) => ({
    title: `${who}: the re-prefill at step ${reprefillStep} fails`,
    policy,
    prompt: e.prompt,
    feed,
    ...(plannedLength !== undefined ? { plannedLength } : {}),
    steps: reprefillStep + 3,
    failStep: reprefillStep,
    hits: recomputes,
  });
  const list = [atReprefill(rePrefill, 'rePrefill', planned), preEstimatePrefill, atReprefill(preEstimate, 'preEstimate without a planned length')];
  if (dynamic) return [...list, atReprefill(() => shadowPrefill({ window: 8, chunk: 3 }), 'shadowPrefill', planned)];

  const T = threshold(ctx);
  // The prompt lies inside the window: the copy is built in the prompt's forward, as a second row.
  const inWindow = () => shadowPrefill({ window: Math.max(4, T - e.prompt.length + 4), chunk: 3 });
  // The prompt ends 12 tokens before the threshold: the copy starts at S = T − 9, in chunks of 4.
  const { prompt, rest } = slicePrompt(ctx, 12);
  const sliceCrossing = T + 1 - prompt.length;
  const sliced = { policy: () => shadowPrefill({ window: 10, chunk: 4 }), prompt, feed: rest, plannedLength: prompt.length + maxNew, steps: Math.min(rest.length + 1, sliceCrossing + 3) };
  return [
    ...list,
    { title: "shadowPrefill: the prompt's forward, which also builds the copy, fails", policy: inWindow, prompt: e.prompt, feed, plannedLength: planned, steps: crossing + 3, failStep: 0, hits: shadowChunk },
    { title: 'shadowPrefill: a shadow chunk during decode fails', ...sliced, failStep: sliceCrossing - 6, hits: shadowChunk },
    { title: 'shadowPrefill: the swap at the crossing fails', ...sliced, failStep: sliceCrossing, hits: swapRow },
    {
      title: 'shadowPrefill on a one-row-per-call backend: the decode row fails after its shadow chunk ran',
      ...sliced,
      probe: { maxRows: 1 },
      failStep: sliceCrossing - 6,
      hits: ownRow,
    },
  ];
}

/**
 * Runs the scenario twice: once without a fault (its events are the reference), once with the
 * first backend call of `failStep` that `hits` made to throw or abort. The failed forward must
 * reject with a typed error (or the abort reason) and leave the cache as it was; the retry and
 * every later step must equal the oracle, and the events end up as in the fault-free run.
 */
async function runFaultScenario(ctx: CaseContext, s: Settings, sc: FaultScenario, mode: 'throw' | 'abort'): Promise<void> {
  expect(sc.feed.length).toBeGreaterThanOrEqual(sc.steps - 1);
  const oracle = sc.oracleSchedule ? { schedule: sc.oracleSchedule } : {};
  const stepIds = (step: number) => (step === 0 ? sc.prompt : [sc.feed[step - 1]!]);
  const exec = (session: Session, step: number, signal?: AbortSignal) =>
    step === 0
      ? session.prefill(stepIds(0), { ...(sc.plannedLength !== undefined ? { plannedLength: sc.plannedLength } : {}), ...(signal ? { signal } : {}) })
      : session.forward(stepIds(step), signal ? { signal } : {});

  const twin = new Session(wrapBackend(probeBackend(ctx.backend, sc.probe), sc.policy()));
  for (let step = 0; step < sc.steps; step++) await exec(twin, step);

  const probe = probeBackend(ctx.backend, sc.probe);
  const session = new Session(wrapBackend(probe, sc.policy()));
  for (let step = 0; step < sc.steps; step++) {
    if (step === sc.failStep) {
      const before = await snapshotCache(session.cache, s.readLayerKeys);
      const controller = new AbortController();
      let failed = false;
      probe.beforeForward = (_request, index) => {
        if (!sc.hits(probe.calls[index]!, session)) return;
        probe.beforeForward = undefined;
        failed = true;
        if (mode === 'abort') controller.abort();
        else throw new InjectedFault(`call ${index}`);
      };
      const error = await exec(session, step, controller.signal).then(
        () => undefined,
        (err: unknown) => err,
      );
      probe.beforeForward = undefined;
      expect(failed, 'a call carrying the intended work was made, and failed').toBe(true);
      if (mode === 'throw') {
        expect(error).toBeInstanceOf(RopeswitchError);
      } else {
        expect(error === controller.signal.reason || (error instanceof Error && error.name === 'AbortError'), `aborted with ${String(error)}`).toBe(true);
      }
      expect(await snapshotCache(session.cache, s.readLayerKeys)).toEqual(before);
    }
    const logits = await exec(session, step);
    const expected = await noCacheForward(ctx.backend, [...sc.prompt, ...sc.feed.slice(0, step)], oracle);
    expect(maxAbsDiff(logits, expected), `step ${step}`).toBeLessThanOrEqual(s.tol);
  }
  expect(eventSummary(session.events)).toEqual(eventSummary(twin.events));
  twin.dispose();
  session.dispose();
}
