import { Session, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { stale } from './stale.js';
import { oracleDiffs, randomIds, recording, snapshot, spanIds, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

describe('stale', () => {
  it('is a named policy with no hooks', () => {
    const p = stale();
    expect(p.name).toBe('stale');
    expect(p.wrapForward).toBeUndefined();
    expect(p.releaseSequence).toBeUndefined();
  });

  it.each([
    ['LongRoPE', () => models.longrope],
    ['dynamic NTK', () => models.dynamic],
  ])('equals the bare backend bit for bit across the threshold (%s)', async (_name, get) => {
    const model = get();
    const ids = randomIds(21, 24, model.vocab);
    const bare = new Session(model.backend);
    const rec = recording(model.backend);
    const wrapped = new Session(wrapBackend(rec, stale()));
    const a = await teacherForce(bare, ids, 10, 24);
    const b = await teacherForce(wrapped, ids, 10, 24);
    expect(b.map((s) => s.logits)).toEqual(a.map((s) => s.logits));
    expect(snapshot(wrapped.cache)).toEqual(snapshot(bare.cache));
    expect(wrapped.events).toEqual([]);
    // One row per call, exactly the session's rows: nothing added, nothing rewritten.
    expect(rec.calls.map((c) => c.length)).toEqual(Array(15).fill(1));
    expect(rec.calls.map((c) => c[0]!.tokens.length)).toEqual([10, ...Array(14).fill(1)]);
  });

  it('leaves a LongRoPE cache stale past the threshold: short keys stay, logits drift from the oracle', async () => {
    const ids = randomIds(22, 22, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, stale()));
    const steps = await teacherForce(session, ids, 12);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    steps.forEach((s, i) => {
      if (s.length <= 16) expect(diffs[i], `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
      else expect(diffs[i], `S = ${s.length}`).toBeGreaterThan(1e-3);
    });
    expect(spanIds(session.cache)).toEqual(['longrope:short', 'longrope:long']);
    expect(session.cache.regimeSpans()[0]!.end).toBe(16);
  });
});
