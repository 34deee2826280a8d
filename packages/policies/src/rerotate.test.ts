import { PolicyError, Session, type PolicyEvent, type RerotateEvent, type RopeRegime, wrapBackend, type Backend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { rerotate } from './rerotate.js';
import { expectRejection, gpuLike, layerKeys, maxAbsDiff, randomIds, recording, spanIds, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

const rotations = (events: readonly PolicyEvent[]) => events.filter((e): e is RerotateEvent => e.type === 'rerotate');

/** A fresh session that prefilled `ids` in one forward (every key under the regime of `ids.length`). */
async function freshPrefill(backend: Backend, ids: readonly number[]): Promise<Session> {
  const s = new Session(backend);
  await s.prefill(ids);
  return s;
}

describe('rerotate', () => {
  it.each([
    ['on the backend', false],
    ['on the CPU', true],
  ])('LongRoPE: after the crossing, layer-0 keys equal a fresh long prefill (1e-5), rotating %s', async (_where, hide) => {
    const ids = randomIds(51, 17, models.longrope.vocab);
    const rec = recording(models.longrope.backend, { hideRerotate: hide });
    const session = new Session(wrapBackend(rec, rerotate()));
    await teacherForce(session, ids, 12);
    const fresh = await freshPrefill(models.longrope.backend, ids);
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
    expect(maxAbsDiff(layerKeys(session.cache, 0), layerKeys(fresh.cache, 0))).toBeLessThanOrEqual(1e-5);
    // Deeper keys came from hidden states that attended under the short regime: only approximate.
    expect(maxAbsDiff(layerKeys(session.cache, 1), layerKeys(fresh.cache, 1))).toBeGreaterThan(1e-4);
  });

  it("uses the backend's rerotateKeys when it declares one", async () => {
    const ids = randomIds(52, 20, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    expect(rec.capabilities.rerotateKeys).toBe(true);
    const session = new Session(wrapBackend(rec, rerotate()));
    await teacherForce(session, ids, 10);
    expect(rec.rerotations).toEqual([{ cache: session.cache, to: 'longrope:long' }]);
    expect(session.events).toEqual([
      { type: 'rerotate', policy: 'rerotate', from: ['longrope:short'], to: 'longrope:long', keys: 16, onBackend: true, atLength: 17 },
    ]);
  });

  it('rotates on the CPU when the backend hides the capability, with the same result', async () => {
    const ids = randomIds(53, 20, models.longrope.vocab);
    const onBackend = new Session(wrapBackend(recording(models.longrope.backend), rerotate()));
    const hidden = recording(models.longrope.backend, { hideRerotate: true });
    expect(hidden.rerotateKeys).toBeUndefined();
    const onCpu = new Session(wrapBackend(hidden, rerotate()));
    const a = await teacherForce(onBackend, ids, 10);
    const b = await teacherForce(onCpu, ids, 10);
    expect(hidden.rerotations).toEqual([]);
    expect(rotations(onCpu.events).map((e) => e.onBackend)).toEqual([false]);
    expect(b.map((s) => s.logits)).toEqual(a.map((s) => s.logits));
  });

  it('rejects with PolicyError cannot-rerotate when the backend cannot rotate and its caches are not on the CPU; nothing moves', async () => {
    const ids = randomIds(54, 17, models.longrope.vocab);
    const rec = recording(gpuLike(models.longrope.backend));
    const session = new Session(wrapBackend(rec, rerotate()));
    expect(session.cache.location).toBe('gpu');
    await session.prefill(ids.slice(0, 16));
    const calls = rec.calls.length;
    const err = await expectRejection(session.forward([ids[16]!]), PolicyError, 'cannot-rerotate');
    expect(err.message).toMatch(/rePrefill|shadowPrefill/);
    expect(rec.calls.length).toBe(calls);
    expect(session.length).toBe(16);
    expect(spanIds(session.cache)).toEqual(['longrope:short']);
  });

  it('an aborted crossing forward leaves a consistent cache: the retry equals an uninterrupted run bit for bit', async () => {
    const ids = randomIds(60, 19, models.longrope.vocab);
    const straight = new Session(wrapBackend(models.longrope.backend, rerotate()));
    const expected = await teacherForce(straight, ids, 16);
    const session = new Session(wrapBackend(models.longrope.backend, rerotate()));
    await session.prefill(ids.slice(0, 16));
    const controller = new AbortController();
    controller.abort();
    await expect(session.forward([ids[16]!], { signal: controller.signal })).rejects.toBe(controller.signal.reason);
    expect(session.length).toBe(16);
    // The keys were rotated before the forward ran (in place, by design); their spans say so.
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
    const got = [];
    for (let i = 16; i < 19; i++) got.push(await session.forward([ids[i]!]));
    expect(got).toEqual(expected.slice(1).map((s) => s.logits));
  });

  it('does nothing below the threshold, nor for a prompt that starts past it', async () => {
    for (const [n, prompt] of [
      [16, 3],
      [21, 18],
    ] as const) {
      const rec = recording(models.longrope.backend);
      const session = new Session(wrapBackend(rec, rerotate()));
      await teacherForce(session, randomIds(55, n, models.longrope.vocab), prompt);
      expect(session.events).toEqual([]);
      expect(rec.rerotations).toEqual([]);
    }
  });

  it('a crossing prompt chunk rotates the earlier chunks once', async () => {
    const ids = randomIds(56, 20, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rerotate()));
    await session.prefill(ids.slice(0, 14));
    await session.prefill(ids.slice(14), { chunkSize: 2 });
    expect(rotations(session.events).map((e) => [e.keys, e.atLength])).toEqual([[14, 16]]);
    const fresh = await freshPrefill(models.longrope.backend, ids);
    expect(maxAbsDiff(layerKeys(session.cache, 0), layerKeys(fresh.cache, 0))).toBeLessThanOrEqual(1e-5);
  });

  it('rotates back when the user rolls the sequence back below the threshold', async () => {
    const ids = randomIds(57, 20, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rerotate()));
    await teacherForce(session, ids, 12);
    session.cache.crop(9);
    await session.forward([ids[9]!]);
    expect(rotations(session.events).at(-1)).toMatchObject({ from: ['longrope:long'], to: 'longrope:short', keys: 9, atLength: 10 });
    const fresh = await freshPrefill(models.longrope.backend, ids.slice(0, 10));
    expect(maxAbsDiff(layerKeys(session.cache, 0), layerKeys(fresh.cache, 0))).toBeLessThanOrEqual(1e-5);
  });

  it('names every stale regime of a mixed cache', async () => {
    const ids = randomIds(58, 19, models.longrope.vocab);
    const bare = new Session(models.longrope.backend);
    await teacherForce(bare, ids.slice(0, 18), 14); // stale: short keys, then long ones
    expect(spanIds(bare.cache)).toEqual(['longrope:short', 'longrope:long']);
    const wrapped = wrapBackend(models.longrope.backend, rerotate());
    const out = await wrapped.forward({ rows: [{ tokens: [ids[18]!], positions: [18], cache: bare.cache, regime: models.longrope.schedule.regimeFor(19) }] });
    expect(out.rows[0]!.events).toEqual([
      { type: 'rerotate', policy: 'rerotate', from: ['longrope:short'], to: 'longrope:long', keys: 18, onBackend: true, atLength: 19 },
    ]);
    const fresh = await freshPrefill(models.longrope.backend, ids);
    expect(maxAbsDiff(layerKeys(bare.cache, 0), layerKeys(fresh.cache, 0))).toBeLessThanOrEqual(1e-5);
  });

  /** `inner` with its `prepareRerotation` calls recorded as [from, to, positions]. */
  function preparing(inner: Backend): Backend & { prepared: [string, string, number][] } {
    const prepared: [string, string, number][] = [];
    return {
      ...recording(inner),
      prepared,
      async prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number) {
        prepared.push([from.id, to.id, positions]);
        await inner.prepareRerotation!(from, to, positions);
      },
    };
  }

  it('prepares the tables of the coming move in the window before the threshold, a share per step, so the crossing only rotates', async () => {
    const ids = randomIds(61, 19, models.longrope.vocab);
    const backend = preparing(models.longrope.backend);
    const session = new Session(wrapBackend(backend, rerotate({ prepareWindow: 4 })));
    const steps = await teacherForce(session, ids, 8, 19);
    // L = 16: S = 13, 14, 15, 16 each prepare a quarter more of positions [0, 16); none before, none after.
    expect(backend.prepared).toEqual([4, 8, 12, 16].map((n) => ['longrope:short', 'longrope:long', n]));
    expect(rotations(session.events).map((e) => e.atLength)).toEqual([17]);
    // Same logits as without preparing, bit for bit.
    const plain = await teacherForce(new Session(wrapBackend(models.longrope.backend, rerotate({ prepareWindow: 0 }))), ids, 8, 19);
    expect(steps.map((s) => s.logits)).toEqual(plain.map((s) => s.logits));
  });

  it('a prompt that ends in the window prepares every position at once; no preparing without a planned crossing or with prepareWindow 0', async () => {
    const ids = randomIds(62, 18, models.longrope.vocab);
    const inWindow = preparing(models.longrope.backend);
    await teacherForce(new Session(wrapBackend(inWindow, rerotate({ prepareWindow: 4 }))), ids, 14, 18);
    // The prompt (S = 14) prepares all 16 positions; the decode steps' shares (12, then 16) are there already.
    expect(inWindow.prepared.map((p) => p[2])).toEqual([16, 12, 16]);
    const noCrossing = preparing(models.longrope.backend);
    await teacherForce(new Session(wrapBackend(noCrossing, rerotate())), ids.slice(0, 16), 10, 16);
    expect(noCrossing.prepared).toEqual([]);
    const off = preparing(models.longrope.backend);
    await teacherForce(new Session(wrapBackend(off, rerotate({ prepareWindow: 0 }))), ids, 10, 18);
    expect(off.prepared).toEqual([]);
  });

  it('rejects a prepareWindow that is not a non-negative integer', () => {
    for (const bad of [-1, 1.5, Number.NaN]) expect(() => rerotate({ prepareWindow: bad })).toThrow(PolicyError);
  });

  it('dynamic NTK: rotates at every step past the threshold; layer-0 keys follow the current regime', async () => {
    const ids = randomIds(59, 21, models.dynamic.vocab);
    const session = new Session(wrapBackend(models.dynamic.backend, rerotate()));
    await session.prefill(ids.slice(0, 14));
    for (let i = 14; i < ids.length; i++) {
      await session.forward([ids[i]!]);
      const fresh = await freshPrefill(models.dynamic.backend, ids.slice(0, i + 1));
      expect(maxAbsDiff(layerKeys(session.cache, 0), layerKeys(fresh.cache, 0)), `S = ${i + 1}`).toBeLessThanOrEqual(1e-5);
      expect(spanIds(session.cache)).toEqual([models.dynamic.schedule.regimeFor(i + 1).id]);
    }
    expect(rotations(session.events).map((e) => [e.atLength, e.from, e.to])).toEqual([
      [17, ['dynamic:base'], 'dynamic:S=17'],
      [18, ['dynamic:S=17'], 'dynamic:S=18'],
      [19, ['dynamic:S=18'], 'dynamic:S=19'],
      [20, ['dynamic:S=19'], 'dynamic:S=20'],
      [21, ['dynamic:S=20'], 'dynamic:S=21'],
    ]);
  });
});
