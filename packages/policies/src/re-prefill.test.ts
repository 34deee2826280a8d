import { BackendError, PolicyError, Session, type PolicyEvent, type RePrefillEvent, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { rePrefill } from './re-prefill.js';
import { expectRejection, faulty, oracleDiffs, randomIds, recording, snapshot, spanIds, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

const rePrefills = (events: readonly PolicyEvent[]) => events.filter((e): e is RePrefillEvent => e.type === 're-prefill');

describe('rePrefill', () => {
  it('LongRoPE: matches noCacheForward at every step across the crossing (1e-4)', async () => {
    const ids = randomIds(41, 26, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rePrefill()));
    const steps = await teacherForce(session, ids, 10);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    diffs.forEach((d, i) => expect(d, `S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
  });

  it('LongRoPE: one re-prefill event at the crossing, counting every token of the sequence', async () => {
    const ids = randomIds(42, 24, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rePrefill()));
    await teacherForce(session, ids, 10);
    expect(session.events).toEqual([{ type: 're-prefill', policy: 're-prefill', regime: 'longrope:long', tokens: 17, atLength: 17 }]);
  });

  it('runs the recomputation in the crossing forward: one row of 17 tokens under the long regime, into a fresh cache', async () => {
    const ids = randomIds(43, 18, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, rePrefill()));
    await teacherForce(session, ids, 14);
    const crossing = rec.calls[3]!;
    expect(crossing).toHaveLength(1);
    expect(crossing[0]!.tokens).toEqual(ids.slice(0, 17));
    expect(crossing[0]!.positions).toEqual(Array.from({ length: 17 }, (_, i) => i));
    expect(crossing[0]!.regime).toBe('longrope:long');
    expect(crossing[0]!.cacheLength).toBe(0);
    expect(crossing[0]!.cache).not.toBe(session.cache);
    // The fresh cache was swapped into the session's own cache object and disposed.
    expect(crossing[0]!.cache.disposed).toBe(true);
    expect(session.cache.disposed).toBe(false);
    expect(rec.calls[4]![0]!.cache).toBe(session.cache);
    expect(rec.calls[4]![0]!.tokens).toHaveLength(1);
  });

  it('the cache after the crossing equals a fresh prefill under the long regime', async () => {
    const ids = randomIds(44, 19, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rePrefill()));
    await teacherForce(session, ids, 15);
    const fresh = new Session(models.longrope.backend);
    await fresh.prefill(ids);
    const a = snapshot(session.cache);
    const b = snapshot(fresh.cache);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.spans).toEqual(b.spans);
    for (let i = 0; i < a.keys.length; i++) expect(Math.abs(a.keys[i]! - b.keys[i]!)).toBeLessThanOrEqual(1e-4);
  });

  it('does nothing below the threshold, nor for a prompt that starts past it', async () => {
    for (const [n, prompt] of [
      [16, 4],
      [22, 20],
    ]) {
      const rec = recording(models.longrope.backend);
      const session = new Session(wrapBackend(rec, rePrefill()));
      await teacherForce(session, randomIds(45, n!, models.longrope.vocab), prompt!);
      expect(session.events).toEqual([]);
      expect(rec.calls.every((c) => c.length === 1 && c[0]!.cache === session.cache)).toBe(true);
    }
  });

  it('dynamic NTK: re-prefills at every step past the threshold and matches the oracle at every step', async () => {
    const ids = randomIds(46, 22, models.dynamic.vocab);
    const session = new Session(wrapBackend(models.dynamic.backend, rePrefill()));
    const steps = await teacherForce(session, ids, 12);
    const diffs = await oracleDiffs(models.dynamic, ids, steps);
    diffs.forEach((d, i) => expect(d, `S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(rePrefills(session.events).map((e) => [e.atLength, e.tokens, e.regime])).toEqual(
      [17, 18, 19, 20, 21, 22].map((S) => [S, S, `dynamic:S=${S}`]),
    );
  });

  it('a failed re-prefill leaves the old cache intact and reports what it was doing', async () => {
    const ids = randomIds(47, 18, models.longrope.vocab);
    let fail = false;
    const rec = recording(faulty(models.longrope.backend, () => (fail ? new Error('out of memory') : undefined)));
    const session = new Session(wrapBackend(rec, rePrefill()));
    await session.prefill(ids.slice(0, 16));
    const before = snapshot(session.cache);
    fail = true;
    const err = await expectRejection(session.forward([ids[16]!]), PolicyError, 'forward-failed');
    expect(err.message).toContain('re-prefill of 17 tokens');
    expect(err.cause).toBeInstanceOf(BackendError);
    expect(snapshot(session.cache)).toEqual(before);
    expect(session.events).toEqual([]);
    // The half-built cache the failed forward was writing to was freed.
    const attempt = rec.calls.at(-1)![0]!;
    expect(attempt.tokens).toHaveLength(17);
    expect(attempt.cache).not.toBe(session.cache);
    expect(attempt.cache.disposed).toBe(true);
  });

  it('after a failed re-prefill the sequence recovers exactly on the next forward', async () => {
    const ids = randomIds(48, 18, models.longrope.vocab);
    let fail = false;
    const backend = faulty(models.longrope.backend, () => (fail ? new Error('transient') : undefined));
    const session = new Session(wrapBackend(backend, rePrefill()));
    await session.prefill(ids.slice(0, 16));
    fail = true;
    await expect(session.forward([ids[16]!])).rejects.toBeInstanceOf(PolicyError);
    fail = false;
    const logits = await session.forward([ids[16]!]);
    const [diff] = await oracleDiffs(models.longrope, ids, [{ length: 17, logits }]);
    expect(diff).toBeLessThanOrEqual(1e-4);
    expect(session.events).toHaveLength(1);
  });

  it('a row asking for more logits than it has tokens is refused at the crossing too, as without the policy', async () => {
    const ids = randomIds(50, 17, models.longrope.vocab);
    const cache = models.longrope.backend.createCache();
    const positions = Int32Array.from({ length: 16 }, (_, i) => i);
    await models.longrope.backend.forward({ rows: [{ tokens: ids.slice(0, 16), positions, cache, regime: models.longrope.schedule.regimeFor(16) }] });
    const row = { tokens: [ids[16]!], positions: [16], cache, regime: models.longrope.schedule.regimeFor(17), logits: 2 };
    await expectRejection(models.longrope.backend.forward({ rows: [{ ...row, cache: cache.clone() }] }), BackendError, 'bad-logits-count');
    const err = await wrapBackend(models.longrope.backend, rePrefill()).forward({ rows: [row] }).catch((e: unknown) => e);
    expect(err, 'the rebuilt row of 17 tokens accepted logits: 2 for a 1-token row').toMatchObject({ code: 'bad-logits-count' });
    expect(cache.length).toBe(16);
  });

  it('an aborted re-prefill rejects with the signal reason, unwrapped, and leaves the cache intact', async () => {
    const ids = randomIds(49, 17, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, rePrefill()));
    await session.prefill(ids.slice(0, 16));
    const controller = new AbortController();
    controller.abort();
    await expect(session.forward([ids[16]!], { signal: controller.signal })).rejects.toBe(controller.signal.reason);
    expect(session.length).toBe(16);
    expect(spanIds(session.cache)).toEqual(['longrope:short']);
  });
});
