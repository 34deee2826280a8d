import {
  type Backend,
  type CachePolicy,
  type KvCache,
  PolicyError,
  type PolicyRow,
  Session,
  noCacheForward,
  wrapBackend,
} from '@ropeswitch/core';
import { describe, expect, it, vi } from 'vitest';
import { rePrefill } from './re-prefill.js';
import { rerotate } from './rerotate.js';
import { shadowPrefill } from './shadow-prefill.js';
import { warnOnly } from './warn-only.js';
import { when } from './when.js';
import { logging, maxAbsDiff, oracleDiffs, randomIds, recording, snapshot, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

const range = (from: number, n: number) => Int32Array.from({ length: n }, (_, i) => from + i);
const planned = (min: number) => (row: PolicyRow) => (row.plannedLength ?? 0) > min;

/** A cache holding `ids` under the regime of their length, filled by the bare backend. */
async function prefilled(cache: KvCache, ids: readonly number[]): Promise<KvCache> {
  await models.longrope.backend.forward({ rows: [{ tokens: ids, positions: range(0, ids.length), cache, regime: models.longrope.schedule.regimeFor(ids.length) }] });
  return cache;
}

/** Two sequences of 16 tokens (short regime) and the next token of each, crossing to S = 17. */
async function twoSequences(backend: Backend = models.longrope.backend) {
  const a = randomIds(101, 17, models.longrope.vocab);
  const b = randomIds(102, 17, models.longrope.vocab);
  const ca = await prefilled(backend.createCache(), a.slice(0, 16));
  const cb = await prefilled(backend.createCache(), b.slice(0, 16));
  const long = models.longrope.schedule.regimeFor(17);
  const rowA: PolicyRow = { tokens: [a[16]!], positions: [16], cache: ca, regime: long, plannedLength: 30 };
  const rowB: PolicyRow = { tokens: [b[16]!], positions: [16], cache: cb, regime: long };
  return { a, b, ca, cb, rowA, rowB };
}

describe('when', () => {
  it('routes each row to its branch: one request, two sequences, each gets its own policy', async () => {
    const rec = recording(models.longrope.backend);
    const { a, b, ca, cb, rowA, rowB } = await twoSequences(rec);
    const staleB = cb.clone();
    const expectedB = (await models.longrope.backend.forward({ rows: [{ ...rowB, cache: staleB }] })).rows[0]!.data;
    rec.calls.length = 0;

    const wrapped = wrapBackend(rec, when(planned(20), rePrefill()));
    const out = await wrapped.forward({ rows: [rowA, rowB] });

    expect(maxAbsDiff(out.rows[0]!.data, await noCacheForward(models.longrope.backend, a))).toBeLessThanOrEqual(1e-4);
    expect(out.rows[0]!.events).toEqual([{ type: 're-prefill', policy: 're-prefill', regime: 'longrope:long', tokens: 17, atLength: 17 }]);
    expect(out.rows[1]!.data).toEqual(expectedB);
    expect(out.rows[1]!.events).toBeUndefined();
    expect(snapshot(cb)).toEqual(snapshot(staleB));
    expect(ca.uniformRegime()?.id).toBe('longrope:long');
    expect(Array.from(ca.tokens())).toEqual(a);
    expect(Array.from(cb.tokens())).toEqual(b);
  });

  it('merges both branches into ONE call to the rest of the chain', async () => {
    const rec = recording(models.longrope.backend);
    const { rowA, rowB } = await twoSequences(rec);
    rec.calls.length = 0;
    const out = await wrapBackend(rec, when(planned(20), rePrefill(), warnOnly())).forward({ rows: [rowA, rowB] });
    expect(rec.calls).toHaveLength(1);
    expect(rec.calls[0]!.map((r) => r.tokens.length).sort((x, y) => x - y)).toEqual([1, 17]);
    expect(out.rows[0]!.events?.map((e) => e.type)).toEqual(['re-prefill']);
    expect(out.rows[1]!.events?.map((e) => e.type)).toEqual(['rope-regime-change']);
  });

  it("merges a branch's extra rows (a shadow chunk) into the same call, and keeps results in request order", async () => {
    const rec = recording(models.longrope.backend);
    const ids = randomIds(103, 14, models.longrope.vocab);
    const cx = rec.createCache();
    const cy = rec.createCache();
    const short = models.longrope.schedule.regimeFor(14);
    const policy = when(planned(20), shadowPrefill());
    const out = await wrapBackend(rec, policy).forward({
      rows: [
        { tokens: ids, positions: range(0, 14), cache: cx, regime: short, logits: 2, prefill: true },
        { tokens: ids.slice(0, 5), positions: range(0, 5), cache: cy, regime: short, logits: 1, prefill: true, plannedLength: 30 },
      ],
    });
    expect(rec.calls).toHaveLength(1);
    expect(rec.calls[0]).toHaveLength(2); // y is out of the window: no shadow for it yet; x has no plan past 20: stale branch
    expect(out.rows.map((r) => r.count)).toEqual([2, 1]);

    const cz = rec.createCache();
    const out2 = await wrapBackend(rec, policy).forward({
      rows: [
        { tokens: ids.slice(0, 3), positions: range(0, 3), cache: cz, regime: short, logits: 3 },
        { tokens: ids.slice(0, 14), positions: range(0, 14), cache: rec.createCache(), regime: short, logits: 1, prefill: true, plannedLength: 30 },
      ],
    });
    expect(rec.calls).toHaveLength(2);
    const call = rec.calls[1]!;
    expect(call).toHaveLength(3);
    expect(call.filter((r) => r.logits === 0 && r.regime === 'longrope:long')).toHaveLength(1);
    expect(out2.rows.map((r) => r.count)).toEqual([3, 1]);
    expect(out2.rows[1]!.events?.map((e) => e.type)).toEqual(['shadow-start']);
  });

  it.each([
    ['the first', true],
    ['the second', false],
  ])('%s branch failing before next fails the whole forward; the backend never runs and no cache moves', async (_which, refuseFirst) => {
    const rec = recording(models.longrope.backend);
    const { ca, cb, rowA, rowB } = await twoSequences(rec);
    const before = [snapshot(ca), snapshot(cb)];
    rec.calls.length = 0;
    const boom = new Error('branch refused');
    const refuse: CachePolicy = { name: 'refuse', wrapForward: () => Promise.reject(boom) };
    const policy = refuseFirst ? when(planned(20), refuse, rePrefill()) : when(planned(20), rePrefill(), refuse);
    const err = await wrapBackend(rec, policy).forward({ rows: [rowA, rowB] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(rec.calls).toEqual([]);
    expect([snapshot(ca), snapshot(cb)]).toEqual(before);
    // Every cache the other branch had started to build was freed.
    expect(rec.created.slice(2).every((c) => c.disposed)).toBe(true);
    // The caller sees the failing branch's own error, not a wrapper from the branch that was waiting on next.
    expect(err).toBe(boom);
  });

  it('a failing merged call rejects both branches and leaves every cache as it was', async () => {
    let calls = 0;
    const rec = recording(models.longrope.backend);
    const { ca, cb, rowA, rowB } = await twoSequences(rec);
    const before = [snapshot(ca), snapshot(cb)];
    const failing = { ...rec, forward: async () => (calls++, Promise.reject(new Error('device lost'))) };
    const err = await wrapBackend(failing, when(planned(20), rePrefill(), rerotate())).forward({ rows: [rowA, { ...rowB, regime: rowA.regime }] }).catch((e: unknown) => e);
    expect(calls).toBe(1);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toContain('device lost');
    expect(snapshot(ca)).toEqual(before[0]);
    // rerotate rotated B in place before the call (its only side effect): the tokens are as they were.
    expect(Array.from(cb.tokens())).toEqual(before[1]!.tokens);
  });

  it('otherwise defaults to pass-through, bit for bit the bare backend', async () => {
    const never = vi.fn<NonNullable<CachePolicy['wrapForward']>>();
    const ids = randomIds(104, 20, models.longrope.vocab);
    const bare = new Session(models.longrope.backend);
    const routed = new Session(wrapBackend(models.longrope.backend, when(() => false, { name: 'never', wrapForward: never })));
    const a = await teacherForce(bare, ids, 10);
    const b = await teacherForce(routed, ids, 10);
    expect(b.map((s) => s.logits)).toEqual(a.map((s) => s.logits));
    expect(snapshot(routed.cache)).toEqual(snapshot(bare.cache));
    expect(never).not.toHaveBeenCalled();
  });

  it('runs only the chosen branch when every row goes one way', async () => {
    const log: string[] = [];
    const policy = when((row) => row.tokens.length > 1, logging('then', log), logging('otherwise', log));
    const session = new Session(wrapBackend(models.longrope.backend, policy));
    await session.prefill([1, 2, 3]);
    await session.forward([4]);
    expect(log).toEqual(['then>', '<then', 'otherwise>', '<otherwise']);
  });

  it('a branch may be a list of policies, run in order', async () => {
    const log: string[] = [];
    const policy = when(() => true, [logging('a', log), logging('b', log)], [logging('x', log)]);
    expect(policy.name).toBe('when(a → b | x)');
    await new Session(wrapBackend(models.longrope.backend, policy)).prefill([1, 2]);
    expect(log).toEqual(['a>', 'b>', '<b', '<a']);
  });

  it('asks the condition with the row, the backend and the schedule', async () => {
    const condition = vi.fn(() => true);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, when(condition, warnOnly())));
    await session.prefill([1, 2, 3], { plannedLength: 9 });
    expect(condition).toHaveBeenCalledTimes(1);
    const [row, context] = condition.mock.calls[0]! as unknown as [PolicyRow, { backend: unknown; schedule: { threshold: number } }];
    expect(row.cache).toBe(session.cache);
    expect(row.plannedLength).toBe(9);
    expect(context.backend).toBe(rec);
    expect(context.schedule.threshold).toBe(16);
  });

  it('a branch that answers without calling next does not hold up the other branch', async () => {
    const rec = recording(models.longrope.backend);
    const { rowA, rowB } = await twoSequences(rec);
    rec.calls.length = 0;
    const canned: CachePolicy = {
      name: 'canned',
      wrapForward: async ({ request }) => ({ rows: request.rows.map(() => ({ count: 1, vocabSize: 1, data: new Float32Array([42]) })) }),
    };
    const out = await wrapBackend(rec, when(planned(20), canned)).forward({ rows: [rowA, rowB] });
    expect(out.rows[0]!.data).toEqual(new Float32Array([42]));
    expect(out.rows[1]!.count).toBe(1);
    expect(out.rows[1]!.vocabSize).toBe(models.longrope.vocab);
    expect(rec.calls).toHaveLength(1);
    expect(rec.calls[0]).toHaveLength(1);
  });

  it('a branch calling next twice in a merged forward rejects with PolicyError next-twice', async () => {
    const { rowA, rowB } = await twoSequences();
    const twice: CachePolicy = {
      name: 'twice',
      async wrapForward({ request, next }) {
        await next(request);
        return next(request);
      },
    };
    await expect(wrapBackend(models.longrope.backend, when(planned(20), twice)).forward({ rows: [rowA, rowB] })).rejects.toMatchObject({ name: 'PolicyError', code: 'next-twice' });
  });

  it('rejects a condition that is not a function', () => {
    expect(() => when('yes' as unknown as () => boolean, rePrefill())).toThrow(PolicyError);
    try {
      when(undefined as unknown as () => boolean, rePrefill());
    } catch (error) {
      expect((error as PolicyError).code).toBe('not-a-condition');
    }
    expect(() => when(() => true, { nope: 1 } as unknown as CachePolicy)).toThrow(PolicyError);
  });

  it('releaseSequence reaches both branches', () => {
    const released: string[] = [];
    const spy = (name: string): CachePolicy => ({ name, releaseSequence: () => released.push(name) });
    when(() => true, [spy('a'), spy('b')], spy('c')).releaseSequence!(models.longrope.backend.createCache());
    expect(released).toEqual(['a', 'b', 'c']);
  });

  it('releaseSequence through when disposes a shadow built in a branch', async () => {
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, when(() => true, shadowPrefill())));
    await session.prefill(randomIds(105, 14, models.longrope.vocab), { plannedLength: 30 });
    const shadow = rec.calls[0]!.find((r) => r.cache !== session.cache)!.cache;
    session.dispose();
    expect(shadow.disposed).toBe(true);
  });

  it('the documented combination: rePrefill for dynamic NTK, shadow + rerotate for LongRoPE, exact where promised', async () => {
    const policy = () => when((_row, { schedule }) => schedule.changesEveryStep, rePrefill(), [shadowPrefill({ late: 'pass' }), rerotate()]);
    const dIds = randomIds(106, 20, models.dynamic.vocab);
    const d = new Session(wrapBackend(models.dynamic.backend, policy()));
    const dSteps = await teacherForce(d, dIds, 12);
    (await oracleDiffs(models.dynamic, dIds, dSteps)).forEach((x, i) => expect(x, `dynamic S = ${dSteps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(d.events.map((e) => e.type)).toEqual(['re-prefill', 're-prefill', 're-prefill', 're-prefill']);

    const lIds = randomIds(107, 22, models.longrope.vocab);
    const l = new Session(wrapBackend(models.longrope.backend, policy()));
    const lSteps = await teacherForce(l, lIds, 8, 22);
    (await oracleDiffs(models.longrope, lIds, lSteps)).forEach((x, i) => expect(x, `longrope S = ${lSteps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(l.events.map((e) => e.type)).toEqual(['shadow-start', 'shadow-swap']);
  });
});
