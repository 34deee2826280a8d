import { beforeAll, describe, expect, it, vi } from 'vitest';
import { BackendError, SessionError } from '../errors.js';
import { CpuKvCache } from '../cache/cpu-kv-cache.js';
import type { CachePolicy } from '../policy/cache-policy.js';
import type { PolicyEvent } from '../policy/policy-events.js';
import { wrapBackend } from '../policy/wrap-backend.js';
import {
  type TinyModel,
  expectRejection,
  faulty,
  maxAbsDiff,
  pinnedSchedule,
  randomIds,
  recording,
  snapshot,
  spanIds,
  tinyLongRope,
} from '@ropeswitch/testkit';
import { noCacheForward } from './no-cache-forward.js';
import { Session } from './session.js';

let model: TinyModel;
beforeAll(async () => {
  model = await tinyLongRope();
});

/** A policy that reports a made-up event on every row's result. */
function reporting(): CachePolicy {
  let n = 0;
  return {
    name: 'reporting',
    async wrapForward({ request, next }) {
      const out = await next(request);
      return { rows: out.rows.map((r) => ({ ...r, events: [{ type: 'rope-regime-change', policy: 'reporting', from: 'x', to: String(n++), atLength: 0 } as PolicyEvent] })) };
    },
  };
}

describe('Session.prefill', () => {
  it('chunked prefill equals a one-shot prefill: logits (1e-5) and cache, under the regime of the whole prompt', async () => {
    const ids = randomIds(10, 21, model.vocab); // 21 > 16: every chunk runs long, even the first ones
    const one = new Session(model.backend);
    const all = await one.prefill(ids, { logits: ids.length });
    for (const chunkSize of [1, 4, 7, 20, 21, 64]) {
      const chunked = new Session(model.backend);
      const logits = await chunked.prefill(ids, { chunkSize, logits: ids.length });
      expect(maxAbsDiff(logits, all), `chunk ${chunkSize}`).toBeLessThanOrEqual(1e-5);
      const a = snapshot(chunked.cache);
      const b = snapshot(one.cache);
      expect(a.tokens).toEqual(ids);
      expect(a.positions).toEqual(b.positions);
      expect(a.spans).toEqual([[0, 21, 'longrope:long']]);
      expect(maxAbsDiff(a.keys, b.keys)).toBeLessThanOrEqual(1e-5);
      expect(maxAbsDiff(a.values, b.values)).toBeLessThanOrEqual(1e-5);
    }
    // The one-shot prefill is the oracle over its prompt.
    expect(maxAbsDiff(all.subarray(-model.vocab), await noCacheForward(model.backend, ids))).toBeLessThanOrEqual(1e-5);
  });

  it('sends every chunk under one regime and marks its rows as prefill with the plan', async () => {
    const rec = recording(model.backend);
    const session = new Session(rec);
    await session.prefill(randomIds(11, 18, model.vocab), { chunkSize: 5, plannedLength: 30 });
    expect(rec.calls.map((c) => c.length)).toEqual([1, 1, 1, 1]);
    expect(rec.calls.map((c) => c[0]!.tokens.length)).toEqual([5, 5, 5, 3]);
    expect(rec.calls.map((c) => c[0]!.positions[0])).toEqual([0, 5, 10, 15]);
    expect(new Set(rec.calls.map((c) => c[0]!.regime))).toEqual(new Set(['longrope:long']));
    expect(session.plannedLength).toBe(30);
  });

  it('continues a sequence: a second prefill runs after what the session holds, under the regime of the new total', async () => {
    const ids = randomIds(12, 20, model.vocab);
    const session = new Session(model.backend);
    await session.prefill(ids.slice(0, 10));
    const logits = await session.prefill(ids.slice(10), { chunkSize: 3 });
    expect(session.length).toBe(20);
    expect(Array.from(session.tokens())).toEqual(ids);
    expect(spanIds(session.cache)).toEqual(['longrope:short', 'longrope:long']);
    expect(session.cache.regimeSpans()[0]!.end).toBe(10);
    expect(logits.length).toBe(model.vocab);
  });

  it('logits: k returns the last k positions, across chunk boundaries', async () => {
    const ids = randomIds(13, 12, model.vocab);
    const full = await new Session(model.backend).prefill(ids, { logits: 12 });
    for (const [k, chunkSize] of [
      [7, 5],
      [5, 5],
      [6, 5],
      [1, 5],
      [12, 5],
      [3, 1],
    ] as const) {
      const got = await new Session(model.backend).prefill(ids, { logits: k, chunkSize });
      expect(got.length, `k ${k} chunk ${chunkSize}`).toBe(k * model.vocab);
      expect(maxAbsDiff(got, full.subarray((12 - k) * model.vocab)), `k ${k} chunk ${chunkSize}`).toBeLessThanOrEqual(1e-5);
    }
  });

  it('logits: 0 returns no logits and still caches the prompt', async () => {
    const session = new Session(model.backend);
    const got = await session.prefill(randomIds(14, 9, model.vocab), { logits: 0, chunkSize: 4 });
    expect(got.length).toBe(0);
    expect(session.length).toBe(9);
  });

  it('rejects bad options with SessionError before anything runs', async () => {
    const rec = recording(model.backend);
    const session = new Session(rec);
    const ids = [1, 2, 3, 4];
    const cases: [object, string][] = [
      [{ chunkSize: 0 }, 'bad-chunk-size'],
      [{ chunkSize: 1.5 }, 'bad-chunk-size'],
      [{ chunkSize: Number.NaN }, 'bad-chunk-size'],
      [{ plannedLength: 3 }, 'bad-planned-length'],
      [{ plannedLength: 10.5 }, 'bad-planned-length'],
      [{ plannedLength: Number.NaN }, 'bad-planned-length'],
      [{ logits: 5 }, 'bad-logits-count'],
      [{ logits: -1 }, 'bad-logits-count'],
      [{ logits: 0.5 }, 'bad-logits-count'],
    ];
    for (const [options, code] of cases) await expectRejection(session.prefill(ids, options), SessionError, code);
    await expectRejection(session.prefill([]), SessionError, 'empty-input');
    await expectRejection(session.forward([]), SessionError, 'empty-input');
    expect(rec.calls).toEqual([]);
    expect(session.length).toBe(0);
  });

  it('plannedLength reserves the cache once: decoding up to the plan never grows it', async () => {
    const session = new Session(model.backend);
    await session.prefill([1, 2, 3], { plannedLength: 40 });
    const cache = session.cache as CpuKvCache;
    expect(cache.capacity).toBeGreaterThanOrEqual(40);
    const keys = cache.keys(0);
    for (let i = 0; i < 37; i++) await session.forward([i % model.vocab]);
    expect(session.length).toBe(40);
    expect(cache.keys(0)).toBe(keys); // same storage: no regrow
    session.dispose();
  });

  it('plannedLength counts what the session already holds', async () => {
    const session = new Session(model.backend);
    await session.prefill([1, 2, 3, 4, 5]);
    await expectRejection(session.prefill([6, 7], { plannedLength: 6 }), SessionError, 'bad-planned-length');
    await session.prefill([6, 7], { plannedLength: 7 });
    expect(session.plannedLength).toBe(7);
  });

  it('a rejected prefill does not change the plan', async () => {
    const session = new Session(model.backend);
    await session.prefill([1, 2, 3], { plannedLength: 10 });
    await expectRejection(session.prefill([4, 5], { plannedLength: 40, logits: 9 }), SessionError, 'bad-logits-count');
    expect(session.plannedLength).toBe(10);
  });
});

describe('Session.forward', () => {
  it('decodes like the oracle below the threshold, and goes stale past it over a bare backend', async () => {
    const ids = randomIds(15, 20, model.vocab);
    const session = new Session(model.backend);
    await session.prefill(ids.slice(0, 10));
    for (let i = 10; i < 20; i++) {
      const logits = await session.forward([ids[i]!]);
      const diff = maxAbsDiff(logits, await noCacheForward(model.backend, ids.slice(0, i + 1)));
      if (i + 1 <= 16) expect(diff, `S = ${i + 1}`).toBeLessThanOrEqual(1e-4);
      else expect(diff, `S = ${i + 1}`).toBeGreaterThan(1e-3);
    }
    expect(spanIds(session.cache)).toEqual(['longrope:short', 'longrope:long']);
  });

  it('logits: k returns the last k positions of a multi-token forward', async () => {
    const ids = randomIds(16, 10, model.vocab);
    const session = new Session(model.backend);
    await session.prefill(ids.slice(0, 6));
    const got = await session.forward(ids.slice(6), { logits: 3 });
    const oracle = await noCacheForward(model.backend, ids, { last: 3 });
    expect(got.length).toBe(3 * model.vocab);
    expect(maxAbsDiff(got, oracle)).toBeLessThanOrEqual(1e-4);
  });

  it('rejects a logits count outside [0, ids.length] with SessionError bad-logits-count before anything runs, like prefill', async () => {
    const rec = recording(model.backend);
    const session = new Session(rec);
    await session.prefill([1, 2, 3]);
    const calls = rec.calls.length;
    for (const logits of [2, -1, 0.5]) await expectRejection(session.forward([4], { logits }), SessionError, 'bad-logits-count');
    expect(rec.calls.length).toBe(calls);
    expect(session.length).toBe(3);
  });

  it('a failed forward leaves length and tokens unchanged, and the session keeps working', async () => {
    let failNext = false;
    const backend = faulty(model.backend, () => (failNext ? new Error('device lost') : undefined));
    const session = new Session(wrapBackend(backend));
    const ids = randomIds(17, 8, model.vocab);
    await session.prefill(ids.slice(0, 6));
    failNext = true;
    const err = await expectRejection(session.forward([ids[6]!]), BackendError, 'forward-failed');
    expect(err.message).toContain('device lost');
    expect(session.length).toBe(6);
    expect(Array.from(session.tokens())).toEqual(ids.slice(0, 6));
    failNext = false;
    const logits = await session.forward([ids[6]!, ids[7]!]);
    expect(maxAbsDiff(logits, await noCacheForward(model.backend, ids))).toBeLessThanOrEqual(1e-4);
  });

  it('a failed chunk keeps the earlier chunks and nothing of the failed one', async () => {
    const backend = faulty(model.backend, (_request, call) => (call === 2 ? new Error('third chunk fails') : undefined));
    const session = new Session(backend);
    const ids = randomIds(18, 12, model.vocab);
    await expect(session.prefill(ids, { chunkSize: 4 })).rejects.toThrow('third chunk fails');
    expect(session.length).toBe(8);
    expect(Array.from(session.tokens())).toEqual(ids.slice(0, 8));
  });

  it('an aborted forward rejects with the signal reason and leaves the session unchanged', async () => {
    const session = new Session(wrapBackend(model.backend));
    await session.prefill([1, 2, 3]);
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(session.forward([4], { signal: controller.signal })).rejects.toBe(controller.signal.reason);
    expect(session.length).toBe(3);
  });

  it('follows a schedule given in the options instead of the config one', async () => {
    const rec = recording(model.backend);
    const long = model.schedule.regimeFor(17);
    const session = new Session(rec, { schedule: pinnedSchedule(model.schedule, long) });
    await session.prefill([1, 2, 3]);
    await session.forward([4]);
    expect(rec.calls.flat().map((r) => r.regime)).toEqual(['longrope:long', 'longrope:long']);
    expect(session.schedule.regimeFor(1)).toBe(long);
  });

  it('tokens() is a copy', async () => {
    const session = new Session(model.backend);
    await session.prefill([5, 6, 7]);
    const t = session.tokens();
    t[0] = 99;
    expect(Array.from(session.tokens())).toEqual([5, 6, 7]);
  });
});

describe('Session events and dispose', () => {
  it('collects the events policies report, oldest first, and calls onEvent with each as it happens', async () => {
    const seen: PolicyEvent[] = [];
    const session = new Session(wrapBackend(model.backend, reporting()), { onEvent: (e) => seen.push(e) });
    await session.prefill([1, 2, 3], { chunkSize: 2 });
    expect(seen.length).toBe(2);
    await session.forward([4]);
    expect(session.events.map((e) => (e as { to: string }).to)).toEqual(['0', '1', '2']);
    expect(seen).toEqual(session.events);
    seen.forEach((e, i) => expect(e).toBe(session.events[i]));
  });

  it('has no events over a bare backend', async () => {
    const onEvent = vi.fn();
    const session = new Session(model.backend, { onEvent });
    await session.prefill(randomIds(19, 18, model.vocab));
    await session.forward([1]);
    expect(session.events).toEqual([]);
    expect(onEvent).not.toHaveBeenCalled();
  });

  it('dispose releases the sequence in every policy and frees the cache, once', async () => {
    const released: unknown[] = [];
    const spy: CachePolicy = { name: 'spy', releaseSequence: (cache) => released.push(cache) };
    const session = new Session(wrapBackend(model.backend, spy));
    await session.prefill([1, 2, 3]);
    const cache = session.cache;
    session.dispose();
    expect(released).toEqual([cache]);
    expect(cache.disposed).toBe(true);
    session.dispose();
    expect(released).toHaveLength(1);
  });

  it('dispose works on a bare backend without releaseSequence', async () => {
    const session = new Session(model.backend);
    await session.prefill([1]);
    session.dispose();
    expect(session.cache.disposed).toBe(true);
  });

  it('a forward after dispose is refused with a typed error', async () => {
    const session = new Session(wrapBackend(model.backend));
    await session.prefill([1, 2]);
    session.dispose();
    await expectRejection(session.forward([3]), BackendError, 'cache-disposed');
  });
});
