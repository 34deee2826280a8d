import { Session, type PolicyEvent, type RegimeChangeEvent, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { warnOnly } from './warn-only.js';
import { randomIds, snapshot, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

const changes = (events: readonly PolicyEvent[]) => events.filter((e): e is RegimeChangeEvent => e.type === 'rope-regime-change');

describe('warnOnly', () => {
  it('LongRoPE: one rope-regime-change event at the crossing, from short to long', async () => {
    const ids = randomIds(31, 26, models.longrope.vocab);
    const seen: PolicyEvent[] = [];
    const session = new Session(wrapBackend(models.longrope.backend, warnOnly()), { onEvent: (e) => seen.push(e) });
    await teacherForce(session, ids, 10);
    expect(session.events).toEqual([{ type: 'rope-regime-change', policy: 'warn-only', from: 'longrope:short', to: 'longrope:long', atLength: 17 }]);
    expect(seen).toEqual(session.events);
  });

  it('then behaves as stale: logits and cache equal the bare backend bit for bit', async () => {
    const ids = randomIds(32, 22, models.longrope.vocab);
    const bare = new Session(models.longrope.backend);
    const warned = new Session(wrapBackend(models.longrope.backend, warnOnly()));
    const a = await teacherForce(bare, ids, 14);
    const b = await teacherForce(warned, ids, 14);
    expect(b.map((s) => s.logits)).toEqual(a.map((s) => s.logits));
    expect(snapshot(warned.cache)).toEqual(snapshot(bare.cache));
  });

  it('dynamic NTK: an event at every step past the threshold, each naming the previous and the new regime', async () => {
    const ids = randomIds(33, 24, models.dynamic.vocab);
    const session = new Session(wrapBackend(models.dynamic.backend, warnOnly()));
    await teacherForce(session, ids, 10);
    const events = changes(session.events);
    expect(events.map((e) => e.atLength)).toEqual([17, 18, 19, 20, 21, 22, 23, 24]);
    expect(events[0]).toMatchObject({ from: 'dynamic:base', to: 'dynamic:S=17' });
    for (let i = 1; i < events.length; i++) expect(events[i]).toMatchObject({ from: `dynamic:S=${16 + i}`, to: `dynamic:S=${17 + i}` });
    expect(session.events).toHaveLength(events.length);
  });

  it.each([
    ['LongRoPE', () => models.longrope],
    ['dynamic NTK', () => models.dynamic],
  ])('no event while the sequence stays at or below the threshold (%s)', async (_name, get) => {
    const model = get();
    const session = new Session(wrapBackend(model.backend, warnOnly()));
    await teacherForce(session, randomIds(34, 16, model.vocab), 5);
    expect(session.length).toBe(16);
    expect(session.events).toEqual([]);
  });

  it('no event for a prompt that starts past the threshold (nothing cached yet), nor after it', async () => {
    const session = new Session(wrapBackend(models.longrope.backend, warnOnly()));
    await teacherForce(session, randomIds(35, 22, models.longrope.vocab), 18);
    expect(session.events).toEqual([]);
  });

  it('a prompt chunk that crosses the threshold warns once at that chunk', async () => {
    const session = new Session(wrapBackend(models.longrope.backend, warnOnly()));
    const ids = randomIds(36, 20, models.longrope.vocab);
    await session.prefill(ids.slice(0, 12));
    await session.prefill(ids.slice(12), { chunkSize: 3 });
    expect(session.events).toEqual([{ type: 'rope-regime-change', policy: 'warn-only', from: 'longrope:short', to: 'longrope:long', atLength: 15 }]);
  });
});
