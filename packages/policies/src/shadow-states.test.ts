import { describe, expect, it } from 'vitest';
import { type CrossingFacts, type ShadowCopyFacts, type ShadowFacts, type ShadowState, shadowState } from './shadow-states.js';

// Threshold 16 (S = 16 is the last short length), window 8: a copy starts at S = 9..16.
const T = 16;
const W = 8;

/** A decode row at S = 12, inside the window, no copy yet, under the defaults. */
const facts = (over: Partial<CrossingFacts> = {}): CrossingFacts => ({
  threshold: T,
  changesEveryStep: false,
  window: W,
  length: 12,
  stale: false,
  plannedLength: undefined,
  late: 'catch-up',
  regimeAhead: true,
  copy: undefined,
  ...over,
});
/** Before the crossing a copy is under the regime ahead, not the row's. */
const aheadLagging: ShadowCopyFacts = { rowRegime: false, caughtUp: false };
const aheadCaughtUp: ShadowCopyFacts = { rowRegime: false, caughtUp: true };
/** At and past the crossing, the row's regime is the copy's. */
const lagging: ShadowCopyFacts = { rowRegime: true, caughtUp: false };
const caughtUp: ShadowCopyFacts = { rowRegime: true, caughtUp: true };
/** A copy under neither (started for another regime than the one the row crosses to). */
const otherRegime: ShadowCopyFacts = { rowRegime: false, caughtUp: true };

const kind = (f: ShadowFacts) => shadowState(f).kind;

describe('shadowState: one state per fact set', () => {
  it("'idle': no threshold, outside the window, not planned to cross, nothing ahead, dynamic NTK with fresh keys, past a swap", () => {
    expect(kind({ threshold: undefined })).toBe('idle');
    expect(kind(facts({ length: T - W - 1 }))).toBe('idle');
    expect(kind(facts({ length: T - W, plannedLength: T }))).toBe('idle');
    expect(kind(facts({ length: T - W, regimeAhead: false }))).toBe('idle');
    expect(kind(facts({ plannedLength: T }))).toBe('idle');
    expect(kind(facts({ regimeAhead: false }))).toBe('idle');
    expect(kind(facts({ changesEveryStep: true, copy: caughtUp }))).toBe('idle');
    expect(kind(facts({ length: T + 5, regimeAhead: false }))).toBe('idle');
    // Neighbours: the window's start, one token later into the window, a plan one past the threshold, stale dynamic keys.
    expect(kind(facts({ length: T - W }))).toBe('prepare');
    expect(kind(facts({ length: T - W + 1 }))).toBe('start');
    expect(kind(facts({ plannedLength: T + 1 }))).toBe('start');
    expect(kind(facts({ changesEveryStep: true, stale: true }))).toBe('rebuild');
  });

  it("'start': the window's first and last lengths, with the threshold it paces for", () => {
    expect(shadowState(facts({ length: T - W + 1 }))).toEqual({ kind: 'start', threshold: T });
    expect(shadowState(facts({ length: T, plannedLength: T + 1 }))).toEqual({ kind: 'start', threshold: T });
    expect(shadowState(facts({ length: 10, threshold: 12, window: 3 }))).toEqual({ kind: 'start', threshold: 12 });
    // Neighbours: just outside the window on either side, a copy already there, a crossing.
    expect(kind(facts({ length: T - W }))).toBe('prepare');
    expect(kind(facts({ length: T + 1 }))).toBe('idle');
    expect(kind(facts({ copy: aheadLagging }))).toBe('building');
    expect(kind(facts({ length: T + 1, stale: true }))).toBe('rebuild');
  });

  it("'prepare': the row that leaves the sequence at the window's start, planned (or assumed) to cross", () => {
    expect(shadowState(facts({ length: T - W }))).toEqual({ kind: 'prepare', threshold: T });
    expect(shadowState(facts({ length: T - W, plannedLength: T + 1 }))).toEqual({ kind: 'prepare', threshold: T });
    expect(shadowState(facts({ length: 9, threshold: 12, window: 3 }))).toEqual({ kind: 'prepare', threshold: 12 });
    // Neighbours: a token before or after, a plan that stays below, no regime ahead, a window from the first token.
    expect(kind(facts({ length: T - W - 1 }))).toBe('idle');
    expect(kind(facts({ length: T - W + 1 }))).toBe('start');
    expect(kind(facts({ length: T - W, plannedLength: T }))).toBe('idle');
    expect(kind(facts({ length: T - W, regimeAhead: false }))).toBe('idle');
    expect(kind(facts({ length: 1, window: T }))).toBe('start');
  });

  it("'building': a copy before the crossing, lagging or caught up, carried to the state", () => {
    const f = facts({ copy: aheadLagging });
    const state = shadowState(f);
    expect(state).toEqual({ kind: 'building', threshold: T, copy: aheadLagging });
    expect(state.kind === 'building' && state.copy).toBe(f.copy);
    // Caught up before the crossing: still building (the new token), no early swap.
    expect(kind(facts({ length: T, copy: aheadCaughtUp }))).toBe('building');
    // Even a copy left from a window the sequence went back out of: it keeps pace.
    expect(kind(facts({ length: 3, copy: aheadLagging }))).toBe('building');
    // Neighbours: the crossing with it caught up, past the threshold with it lagging.
    expect(kind(facts({ length: T + 1, stale: true, copy: caughtUp }))).toBe('swap');
    expect(kind(facts({ length: T + 1, copy: lagging }))).toBe('late');
  });

  it("'swap': the crossing with a caught-up copy (either late option) or catch-up; past a late crossing once caught up", () => {
    const crossing = facts({ length: T + 1, stale: true });
    for (const late of ['catch-up', 'pass'] as const) {
      expect(shadowState({ ...crossing, late, copy: caughtUp })).toEqual({ kind: 'swap', copy: caughtUp });
    }
    expect(kind({ ...crossing, copy: lagging })).toBe('swap');
    expect(kind(facts({ length: T + 4, late: 'pass', copy: caughtUp }))).toBe('swap');
    // Neighbours: lagging under 'pass'; past a late crossing still lagging, or caught up under another regime.
    expect(kind({ ...crossing, late: 'pass', copy: lagging })).toBe('late');
    expect(kind(facts({ length: T + 4, late: 'pass', copy: lagging }))).toBe('late');
    expect(kind(facts({ length: T + 4, copy: otherRegime }))).toBe('late');
  });

  it("'late': a crossing under 'pass' with a lagging copy, and every step past it until the copy catches up", () => {
    const f = facts({ length: T + 1, stale: true, late: 'pass', copy: lagging });
    expect(shadowState(f)).toEqual({ kind: 'late', threshold: T, copy: lagging });
    for (const late of ['catch-up', 'pass'] as const) expect(kind(facts({ length: T + 2, late, copy: lagging }))).toBe('late');
    // Neighbours: catch-up at the crossing, caught up, one token before the threshold.
    expect(kind({ ...f, late: 'catch-up' })).toBe('swap');
    expect(kind({ ...f, copy: caughtUp })).toBe('swap');
    expect(kind(facts({ length: T, late: 'pass', copy: lagging }))).toBe('building');
  });

  it("'late-start': a crossing under 'pass' with no copy, or one of another regime", () => {
    const f = facts({ length: T + 1, stale: true, late: 'pass', plannedLength: T });
    expect(shadowState(f)).toEqual({ kind: 'late-start', threshold: T });
    expect(kind({ ...f, copy: otherRegime })).toBe('late-start');
    // Neighbours: catch-up rebuilds instead; fresh keys pass; a copy of the row's regime is used.
    expect(kind({ ...f, late: 'catch-up' })).toBe('rebuild');
    expect(kind({ ...f, stale: false })).toBe('idle');
    expect(kind({ ...f, copy: lagging })).toBe('late');
  });

  it("'rebuild': a crossing under catch-up with no usable copy; stale keys under dynamic NTK, copy or not", () => {
    const f = facts({ length: T + 1, stale: true });
    expect(shadowState(f)).toEqual({ kind: 'rebuild', reason: 'no-copy' });
    expect(shadowState({ ...f, copy: otherRegime })).toEqual({ kind: 'rebuild', reason: 'no-copy' });
    for (const late of ['catch-up', 'pass'] as const) {
      expect(shadowState({ ...f, changesEveryStep: true, late, copy: caughtUp })).toEqual({ kind: 'rebuild', reason: 'changes-every-step' });
    }
    // Neighbours: a copy of the row's regime; 'pass'; dynamic NTK with fresh keys.
    expect(kind({ ...f, copy: lagging })).toBe('swap');
    expect(kind({ ...f, late: 'pass' })).toBe('late-start');
    expect(kind({ ...f, changesEveryStep: true, stale: false })).toBe('idle');
  });
});

describe('shadowState: invariants over every fact set', () => {
  const copies = [undefined, aheadLagging, aheadCaughtUp, lagging, caughtUp];
  const all: CrossingFacts[] = [];
  for (let length = T - W - 1; length <= T + 2; length++)
    for (const stale of [false, true])
      for (const plannedLength of [undefined, T, T + 1])
        for (const late of ['catch-up', 'pass'] as const)
          for (const regimeAhead of [false, true])
            for (const changesEveryStep of [false, true])
              for (const copy of copies) all.push(facts({ length, stale, plannedLength, late, regimeAhead, changesEveryStep, copy }));
  const passes = new Set<ShadowState['kind']>(['idle', 'prepare', 'start', 'building', 'late', 'late-start']);

  it("under 'catch-up' stale keys never pass: the row swaps or rebuilds", () => {
    const stalePasses = all.filter((f) => f.stale && f.late === 'catch-up' && passes.has(kind(f)));
    expect(stalePasses).toEqual([]);
  });

  it('the states that act on a copy have the facts’ copy; the others come without one, or drop it', () => {
    for (const f of all) {
      const state = shadowState(f);
      if ('copy' in state) expect(state.copy, JSON.stringify(f)).toBe(f.copy);
      if (state.kind === 'start' || state.kind === 'prepare') expect(f.copy, JSON.stringify(f)).toBeUndefined();
      if (state.kind === 'late-start' || (state.kind === 'rebuild' && state.reason === 'no-copy')) expect(f.copy?.rowRegime, JSON.stringify(f)).not.toBe(true);
    }
  });

  it('dynamic NTK only ever rebuilds stale keys: no copy is started, built or swapped', () => {
    const kinds = new Set(all.filter((f) => f.changesEveryStep).map(kind));
    expect([...kinds].sort()).toEqual(['idle', 'rebuild']);
  });
});

/**
 * A sequence stepped through shadowState as `shadowPrefill` acts on it, with the caches reduced to
 * lengths and regime names: a copy grows by `chunk` a step (the whole sequence in a prompt row),
 * never past the sequence; a row the policy lets pass is served by a policy after it (its cache
 * then holds the row's regime); a swap or a rebuild leaves the cache in the row's regime.
 * Returns each run of one state as `state@S`, S the length after its first row.
 */
function decode(run: { prompt: number; to: number; window: number; chunk: number; late: 'catch-up' | 'pass'; plannedLength?: number }): string[] {
  const regimeFor = (S: number) => (S > T ? 'long' : 'short');
  let cache: { length: number; regime: string } = { length: 0, regime: 'short' };
  let copy: { length: number; regime: string } | undefined;
  const runs: string[] = [];
  let last: string | undefined;
  for (let n = run.prompt; cache.length < run.to; n = 1) {
    const S = cache.length + n;
    const regime = regimeFor(S);
    const state = shadowState({
      threshold: T,
      changesEveryStep: false,
      window: run.window,
      length: S,
      stale: cache.length > 0 && cache.regime !== regime,
      plannedLength: run.plannedLength,
      late: run.late,
      regimeAhead: regimeFor(T + 1) !== regime,
      copy: copy && { rowRegime: copy.regime === regime, caughtUp: copy.length === cache.length },
    });
    if (state.kind === 'start') copy = { length: 0, regime: regimeFor(T + 1) };
    if (state.kind === 'late-start') copy = { length: 0, regime };
    if (state.kind === 'swap' || state.kind === 'rebuild') copy = undefined;
    if (copy) copy.length = Math.min(S, copy.length + (cache.length === 0 ? Infinity : run.chunk));
    cache = { length: S, regime };
    if (state.kind !== last) runs.push(`${state.kind}@${S}`);
    last = state.kind;
  }
  return runs;
}

/** The transitions the module comment draws (a state may also repeat). */
const NEXT: Record<ShadowState['kind'], readonly ShadowState['kind'][]> = {
  idle: ['prepare', 'start', 'late-start', 'rebuild'],
  prepare: ['start'],
  start: ['building', 'late', 'swap'],
  building: ['late', 'swap'],
  late: ['swap'],
  'late-start': ['late', 'swap'],
  swap: ['idle'],
  rebuild: ['idle'],
};

describe('shadowState: transitions along a decode', () => {
  it('a plain decode to the crossing: idle, start at the window, building, swap at the crossing, idle', () => {
    // Chunks of 3 build the 16 tokens in the window's 8 steps.
    expect(decode({ prompt: 4, to: 20, window: W, chunk: 3, late: 'catch-up' })).toEqual([
      'idle@4',
      `prepare@${T - W}`,
      `start@${T - W + 1}`,
      `building@${T - W + 2}`,
      `swap@${T + 1}`,
      `idle@${T + 2}`,
    ]);
    // A prompt inside the window starts (and builds) the whole copy in its own forward.
    expect(decode({ prompt: 12, to: 20, window: W, chunk: 3, late: 'catch-up' })).toEqual(['start@12', 'building@13', `swap@${T + 1}`, `idle@${T + 2}`]);
  });

  it("a copy that lags at the crossing: swapped in there under 'catch-up'; late until it catches up under 'pass'", () => {
    // Window 2, chunks of 2: the copy holds 4 of 16 tokens at the crossing.
    const lateRun = { prompt: 4, to: 32, window: 2, chunk: 2 };
    expect(decode({ ...lateRun, late: 'catch-up' })).toEqual(['idle@4', `prepare@${T - 2}`, `start@${T - 1}`, `building@${T}`, `swap@${T + 1}`, `idle@${T + 2}`]);
    // Under 'pass' it gains chunk - 1 = 1 token a step on the 12 it lags: caught up 12 steps on.
    expect(decode({ ...lateRun, late: 'pass' })).toEqual(['idle@4', `prepare@${T - 2}`, `start@${T - 1}`, `building@${T}`, `late@${T + 1}`, `swap@${T + 13}`, `idle@${T + 14}`]);
  });

  it("a sequence planned to stop at the threshold that crosses anyway: a rebuild, or under 'pass' a late start", () => {
    const unplanned = { prompt: 4, to: 32, window: W, chunk: 3, plannedLength: T };
    expect(decode({ ...unplanned, late: 'catch-up' })).toEqual(['idle@4', `rebuild@${T + 1}`, `idle@${T + 2}`]);
    // The late copy takes 3 of the 17 tokens at the crossing, then gains 2 a step on the 14 it lags.
    expect(decode({ ...unplanned, late: 'pass' })).toEqual(['idle@4', `late-start@${T + 1}`, `late@${T + 2}`, `swap@${T + 9}`, `idle@${T + 10}`]);
  });

  it('every decode follows the transitions of the module comment and ends idle', () => {
    let runs = 0;
    for (const prompt of [1, 5, 9, 15, 16, 17])
      for (const window of [1, 2, 8, 16])
        for (const chunk of [2, 3, 17])
          for (const late of ['catch-up', 'pass'] as const)
            for (const plannedLength of [undefined, T, 40]) {
              const states = decode({ prompt, to: 40, window, chunk, late, plannedLength }).map((r) => r.split('@')[0] as ShadowState['kind']);
              const label = JSON.stringify({ prompt, window, chunk, late, plannedLength, states });
              states.slice(1).forEach((s, i) => expect(NEXT[states[i]!], label).toContain(s));
              expect(states.at(-1), label).toBe('idle');
              runs++;
            }
    expect(runs).toBe(6 * 4 * 3 * 2 * 3);
  });
});
