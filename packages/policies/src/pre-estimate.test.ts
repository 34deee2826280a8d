import { Session, noCacheForward, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { preEstimate } from './pre-estimate.js';
import { maxAbsDiff, oracleDiffs, pinnedSchedule, randomIds, recording, snapshot, spanIds, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

describe('preEstimate', () => {
  it('planned length past the threshold: long regime from the first token, logits equal the long-regime oracle at every step', async () => {
    const ids = randomIds(61, 24, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, preEstimate()));
    const steps = await teacherForce(session, ids, 10, 24);
    expect(new Set(rec.calls.flat().map((r) => r.regime))).toEqual(new Set(['longrope:long']));
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
    const long = pinnedSchedule(models.longrope.schedule, models.longrope.schedule.regimeFor(17));
    for (const s of steps) {
      const oracle = await noCacheForward(models.longrope.backend, ids.slice(0, s.length), { schedule: long });
      expect(maxAbsDiff(s.logits, oracle), `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
    }
    // Exact against the true oracle from the crossing on; long factors on the short part before it.
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    steps.forEach((s, i) => {
      if (s.length > 16) expect(diffs[i], `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
    });
    expect(Math.max(...diffs.slice(0, 7))).toBeGreaterThan(1e-3);
  });

  it('reports one pre-estimate event, at the prompt, and nothing at the crossing', async () => {
    const ids = randomIds(62, 20, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, preEstimate()));
    await teacherForce(session, ids, 6, 30);
    expect(session.events).toEqual([{ type: 'pre-estimate', policy: 'pre-estimate', regime: 'longrope:long', plannedLength: 30, atLength: 6 }]);
  });

  it('a chunked prompt runs every chunk long and reports the plan once', async () => {
    const ids = randomIds(63, 12, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, preEstimate()));
    await session.prefill(ids, { chunkSize: 5, plannedLength: 40 });
    expect(rec.calls.map((c) => c[0]!.regime)).toEqual(['longrope:long', 'longrope:long', 'longrope:long']);
    expect(session.events.map((e) => e.type)).toEqual(['pre-estimate']);
  });

  it('no effect when the plan stays at or below the threshold and the sequence never crosses', async () => {
    const ids = randomIds(64, 16, models.longrope.vocab);
    const bare = new Session(models.longrope.backend);
    const planned = new Session(wrapBackend(models.longrope.backend, preEstimate()));
    const a = await teacherForce(bare, ids, 8, 16);
    const b = await teacherForce(planned, ids, 8, 16);
    expect(b.map((s) => s.logits)).toEqual(a.map((s) => s.logits));
    expect(snapshot(planned.cache)).toEqual(snapshot(bare.cache));
    expect(planned.events).toEqual([]);
  });

  it('no event when the prompt itself is already past the threshold', async () => {
    const session = new Session(wrapBackend(models.longrope.backend, preEstimate()));
    await teacherForce(session, randomIds(65, 22, models.longrope.vocab), 18, 30);
    expect(session.events).toEqual([]);
  });

  it.each([
    ['the plan is exceeded', 14],
    ['there is no plan', undefined],
  ])('behaves like rePrefill when %s: exact at every step, one re-prefill at the crossing', async (_why, plannedLength) => {
    const ids = randomIds(66, 22, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, preEstimate()));
    const steps = await teacherForce(session, ids, 8, plannedLength);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    diffs.forEach((d, i) => expect(d, `S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(session.events).toEqual([{ type: 're-prefill', policy: 'pre-estimate', regime: 'longrope:long', tokens: 17, atLength: 17 }]);
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
  });

  it('dynamic NTK: the regime of the planned length until the sequence reaches it, then a re-prefill at every step', async () => {
    const ids = randomIds(67, 23, models.dynamic.vocab);
    const rec = recording(models.dynamic.backend);
    const session = new Session(wrapBackend(rec, preEstimate()));
    const steps = await teacherForce(session, ids, 8, 20);
    // Up to S = 20 every row ran under the regime of S = 20.
    const upTo20 = rec.calls.slice(0, 1 + 20 - 8).flat();
    expect(new Set(upTo20.map((r) => r.regime))).toEqual(new Set(['dynamic:S=20']));
    expect(session.events.map((e) => [e.type, e.atLength])).toEqual([
      ['pre-estimate', 8],
      ['re-prefill', 21],
      ['re-prefill', 22],
      ['re-prefill', 23],
    ]);
    const diffs = await oracleDiffs(models.dynamic, ids, steps);
    steps.forEach((s, i) => {
      if (s.length >= 20) expect(diffs[i], `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
    });
    expect(spanIds(session.cache)).toEqual(['dynamic:S=23']);
  });

  it('each row of a request follows its own plan', async () => {
    const ids = randomIds(68, 10, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const wrapped = wrapBackend(rec, preEstimate());
    const a = rec.createCache();
    const b = rec.createCache();
    const positions = Int32Array.from({ length: 10 }, (_, i) => i);
    const short = models.longrope.schedule.regimeFor(10);
    const out = await wrapped.forward({
      rows: [
        { tokens: ids, positions, cache: a, regime: short, plannedLength: 40 },
        { tokens: ids, positions, cache: b, regime: short, plannedLength: 12 },
      ],
    });
    expect(rec.calls).toHaveLength(1);
    expect(rec.calls[0]!.map((r) => r.regime)).toEqual(['longrope:long', 'longrope:short']);
    expect(out.rows[0]!.events?.map((e) => e.type)).toEqual(['pre-estimate']);
    expect(out.rows[1]!.events).toBeUndefined();
  });
});
