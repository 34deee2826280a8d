/**
 * Fault injection in the policy chain. A wrapper under the chain fails the Nth backend call — it
 * throws, rejects, returns too few rows or a short row, or NaN/±Infinity logits — for every N over
 * a run that crosses the RoPE threshold, with every policy and a few compositions, on a LongRoPE and
 * a dynamic-NTK tiny model. After each fault:
 * - the session's forward rejects with a typed error (`BackendError` `bad-result` for wrong shapes,
 *   `nan-logits` naming the sequence length for non-finite logits; a policy rewriting the row may
 *   wrap it in a `PolicyError` naming what it was doing);
 * - the session's cache is unchanged (length, tokens, positions, regime spans, keys, values), except
 *   that `rerotate` rotates before the forward: its cache may then hold the same keys rotated to the
 *   step's regime, consistently tagged;
 * - retried once the fault is gone, the run continues exactly as an un-faulted run of the same
 *   policy (bitwise), and exact policies equal the no-cache oracle.
 */
import {
  type Backend,
  CpuKvCache,
  type KvCache,
  type RopeRegime,
  RopeswitchError,
  Session,
  noCacheForward,
  rerotateCpuKeys,
  wrapBackend,
} from '@ropeswitch/core';
import { rerotate } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type TinyModel,
  maxAbsDiff,
  pinnedSchedule,
  randomIds,
  snapshot,
  tinyDynamicNtk,
  tinyLongRope,
} from '@ropeswitch/testkit';
import { type Exactness, type PolicyCase, POLICY_CASES } from './support/policy-cases.js';
import { FAULT_KINDS, type FaultInjector, type FaultKind, InjectedError, causeChain, faultInjector, findCode } from './support/fault-injection.js';

const PROMPT = 10;
const TOTAL = 24; // crosses the threshold (16) at S = 17; dynamic NTK re-prefills from there on
const ORACLE_TOL = 1e-4;

interface ModelCase {
  readonly label: string;
  readonly index: 0 | 1;
  model: TinyModel;
  ids: number[];
  /** Oracle logits per step (step 0: the prompt), by the regime of each step's total length. */
  oracle: Float32Array[];
  /** The same under the regime of the planned length (preEstimate's oracle). */
  planned: Float32Array[];
}

const models: ModelCase[] = [
  { label: 'LongRoPE', index: 0 } as ModelCase,
  { label: 'dynamic NTK', index: 1 } as ModelCase,
];

/** Faults injected, per policy (summed over models and kinds). */
const injected = new Map<string, number>();

beforeAll(async () => {
  const [longrope, dynamic] = await Promise.all([tinyLongRope(), tinyDynamicNtk()]);
  for (const [m, model, seed] of [[models[0]!, longrope, 3], [models[1]!, dynamic, 5]] as const) {
    m.model = model;
    m.ids = randomIds(seed, TOTAL, model.vocab);
    const pinned = pinnedSchedule(model.schedule, model.schedule.regimeFor(TOTAL));
    m.oracle = [];
    m.planned = [];
    for (let len = PROMPT; len <= TOTAL; len++) {
      m.oracle.push(await noCacheForward(model.backend, m.ids.slice(0, len)));
      m.planned.push(await noCacheForward(model.backend, m.ids.slice(0, len), { schedule: pinned }));
    }
  }
});

afterAll(() => {
  const total = [...injected.values()].reduce((a, b) => a + b, 0);
  const parts = [...injected.entries()].map(([name, n]) => `${name} ${n}`);
  console.info(`faults injected: ${total} in all (${FAULT_KINDS.join(', ')}; every call of a run, LongRoPE and dynamic NTK) — ${parts.join('; ')}`);
});

/** Step 0 prefills the prompt (planned length TOTAL); step i feeds token PROMPT + i − 1. */
function runStep(session: Session, ids: readonly number[], step: number): Promise<Float32Array> {
  return step === 0 ? session.prefill(ids.slice(0, PROMPT), { plannedLength: TOTAL }) : session.forward([ids[PROMPT + step - 1]!]);
}
const STEPS = TOTAL - PROMPT + 1;

/** An un-faulted run through a fresh injector: its logits per step and how many backend calls it made. */
async function twinRun(m: ModelCase, c: PolicyCase): Promise<{ logits: Float32Array[]; calls: number }> {
  const injector = faultInjector(m.model.backend);
  const session = new Session(wrapBackend(injector, ...c.make()));
  const logits: Float32Array[] = [];
  for (let step = 0; step < STEPS; step++) logits.push(await runStep(session, m.ids, step));
  session.dispose();
  return { logits, calls: injector.calls };
}

/** What the failed forward's error must be, by fault kind; `lengthAfter` is the sequence length the step computes. */
function expectTypedError(error: unknown, kind: FaultKind, lengthAfter: number, injector: FaultInjector): void {
  const where = `${kind} at call ${injector.injected?.call}: ${causeChain(error).map(String).join(' ← ')}`;
  expect(error, where).toBeInstanceOf(RopeswitchError);
  switch (kind) {
    case 'throw':
    case 'reject':
    case 'reject-value': {
      const failed = findCode(error, 'forward-failed');
      expect(failed, where).toBeDefined();
      if (kind !== 'reject-value') expect(causeChain(error).some((e) => e instanceof InjectedError), where).toBe(true);
      break;
    }
    case 'few-rows':
    case 'bad-length':
      expect(findCode(error, 'bad-result'), where).toBeDefined();
      break;
    case 'nan': {
      const nan = findCode(error, 'nan-logits');
      expect(nan, where).toBeDefined();
      expect(nan!.message, where).toContain(`sequence length ${lengthAfter}`);
      if (injector.injected?.kind === 'nan') expect(injector.injected.lengthAfter).toBe(lengthAfter);
      break;
    }
  }
}

/**
 * A cache after a failed forward: as before it, or (for a chain that rotates) the same tokens with
 * every key rotated to the step's regime, exactly as rotating a copy of the old cache gives.
 */
function expectCacheKept(before: ReturnType<typeof snapshot>, beforeCache: KvCache, after: KvCache, regime: RopeRegime, rotates: boolean, m: ModelCase): void {
  const now = snapshot(after);
  if (!rotates || JSON.stringify(now.spans) === JSON.stringify(before.spans)) {
    expect(now).toEqual(before);
    return;
  }
  const rotated = beforeCache.clone() as CpuKvCache;
  rerotateCpuKeys(rotated, regime, m.model.schedule.pairing, m.model.backend.capabilities.anglePrecision);
  expect(now.spans).toEqual([[0, before.length, regime.id]]);
  expect(now).toEqual(snapshot(rotated));
  rotated.dispose();
}

function oracleFor(m: ModelCase, exact: Exactness): Float32Array[] | undefined {
  return exact === 'oracle' ? m.oracle : exact === 'planned-oracle' ? m.planned : undefined;
}

for (const m of models) {
  describe(`faults on the Nth backend call, every N, ${m.label}`, () => {
    for (const c of POLICY_CASES) {
      it(`${c.name}: every fault leaves the cache as it was and a typed error; the retry continues exactly`, async () => {
        const twin = await twinRun(m, c);
        const oracle = oracleFor(m, c.exact[m.index]);
        if (oracle) twin.logits.forEach((l, step) => expect(maxAbsDiff(l, oracle[step]!), `twin, step ${step}`).toBeLessThanOrEqual(ORACLE_TOL));
        let faults = 0;
        for (const kind of FAULT_KINDS) {
          for (let n = 0; n < twin.calls; n++) {
            const injector = faultInjector(m.model.backend);
            const backend: Backend = wrapBackend(injector, ...c.make());
            const session = new Session(backend);
            injector.arm(n, kind);
            for (let step = 0; step < STEPS; step++) {
              const before = snapshot(session.cache);
              const beforeCache = session.cache.clone();
              const lengthAfter = step === 0 ? PROMPT : PROMPT + step;
              const error = await runStep(session, m.ids, step).then(
                (logits) => {
                  expect(logits, `step ${step}`).toEqual(twin.logits[step]);
                  return undefined;
                },
                (err: unknown) => err ?? new Error('rejected with undefined'),
              );
              if (error !== undefined) {
                const where = `${kind} at call ${n}, step ${step}`;
                expect(injector.injected, `${where}: failed without an injected fault: ${String(error)}`).toBeDefined();
                faults++;
                expectTypedError(error, kind, lengthAfter, injector);
                expectCacheKept(before, beforeCache, session.cache, session.schedule.regimeFor(lengthAfter), c.rotates, m);
                // The fault is gone: the same step again continues the run exactly.
                expect(await runStep(session, m.ids, step), `${where}, retried`).toEqual(twin.logits[step]);
              }
              beforeCache.dispose();
            }
            expect(injector.injected, `${kind} at call ${n}: the armed call came`).toBeDefined();
            session.dispose();
          }
        }
        expect(faults).toBe(FAULT_KINDS.length * twin.calls);
        injected.set(c.name, (injected.get(c.name) ?? 0) + faults);
      });
    }
  });
}

describe('faults outside forward calls', () => {
  it('a backend whose rerotateKeys throws: rerotate reports a typed error, the cache is untouched, the retry is exact', async () => {
    const m = models[0]!;
    const c = POLICY_CASES.find((x) => x.name === 'rerotate')!;
    const twin = await twinRun(m, c);
    const inner = m.model.backend;
    let failNext = false;
    let thrown = 0;
    const backend: Backend = {
      ...faultInjector(inner),
      rerotateKeys: async (cache: KvCache, to: RopeRegime) => {
        if (failNext) {
          failNext = false;
          thrown++;
          throw new InjectedError('injected: rerotateKeys throws');
        }
        return inner.rerotateKeys!(cache, to);
      },
    };
    const session = new Session(wrapBackend(backend, rerotate()));
    for (let step = 0; step < STEPS; step++) {
      const crossing = PROMPT + step === 17;
      failNext = crossing;
      const before = snapshot(session.cache);
      const outcome = await runStep(session, m.ids, step).then(
        (logits) => ({ logits }),
        (error: unknown) => ({ error }),
      );
      if (crossing) {
        expect('error' in outcome, 'the crossing forward failed').toBe(true);
        const error = (outcome as { error: unknown }).error;
        expect(error, causeChain(error).map(String).join(' ← ')).toBeInstanceOf(RopeswitchError);
        expect(snapshot(session.cache)).toEqual(before);
        expect(await runStep(session, m.ids, step)).toEqual(twin.logits[step]);
      } else {
        expect((outcome as { logits: Float32Array }).logits).toEqual(twin.logits[step]);
      }
    }
    expect(thrown).toBe(1);
    session.dispose();
  });
});
