import { describe, expect, it } from 'vitest';
import {
  BatchScheduler,
  type Backend,
  type ForwardRequest,
  type ForwardResult,
  type GenerateResult,
  SessionError,
  generate,
  wrapBackend,
} from '@ropeswitch/core';
import { rePrefill, shadowPrefill, stale } from '@ropeswitch/policies';
import { expectRejection, randomIds, snapshot } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

/** A bare backend that records each call's rows (tokens per row) and may act before each call. */
function watched(inner: Backend, calls: number[][], before?: (request: ForwardRequest, call: number) => void): Backend {
  return {
    ...inner,
    createCache: () => inner.createCache(),
    forward(request: ForwardRequest): Promise<ForwardResult> {
      calls.push(request.rows.map((r) => r.tokens.length));
      before?.(request, calls.length - 1);
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
}

/** Eight prompts of different lengths, so the sequences cross the threshold (16) at different steps. */
const prompts = (vocab: number) => [3, 5, 7, 9, 11, 12, 13, 14].map((n, i) => randomIds(100 + i, n, vocab));

const same = (a: GenerateResult, b: GenerateResult) => {
  expect(a.tokens).toEqual(b.tokens);
  expect(a.events).toEqual(b.events);
  expect(a.logits.length).toBe(b.logits.length);
  a.logits.forEach((l, i) => expect(Array.from(l)).toEqual(Array.from(b.logits[i]!)));
};

describe('BatchScheduler', () => {
  for (const [name, make] of [['shadowPrefill', () => shadowPrefill()], ['rePrefill', () => rePrefill()], ['stale', () => stale()]] as const) {
    it(`${name}: eight sequences batched into shared steps, each bit for bit its solo run, events included`, async () => {
      const m = models.longrope;
      const solo: GenerateResult[] = [];
      for (const p of prompts(m.vocab)) solo.push(await generate(wrapBackend(m.backend, make()), p, { maxNewTokens: 10 }));
      const calls: number[][] = [];
      const scheduler = new BatchScheduler(wrapBackend(watched(m.backend, calls), make()), { maxRows: 16 });
      const batched = await Promise.all(prompts(m.vocab).map(async (p) => {
        const session = scheduler.session();
        try {
          return await generate(session, p, { maxNewTokens: 10 });
        } finally {
          session.dispose();
        }
      }));
      batched.forEach((b, i) => same(b, solo[i]!));
      const { steps, forwards, maxForwardsInStep } = scheduler.stats;
      expect(forwards).toBe(8 * 10);
      expect(maxForwardsInStep).toBe(8);
      // Batching: far fewer backend steps than forwards, and each step one backend call (maxRows 16 fits).
      expect(steps).toBeLessThan(forwards / 4);
      expect(calls).toHaveLength(steps);
      await scheduler.close();
    });
  }

  it('interleaves prompt chunks with other sequences\' decode rows, within the token budget', async () => {
    const m = models.longrope;
    const calls: number[][] = [];
    const scheduler = new BatchScheduler(watched(m.backend, calls), { maxTokens: 8, prefillChunk: 4 });
    const short = scheduler.session();
    await short.prefill([1, 2]);
    const long = scheduler.session();
    const longIds = randomIds(7, 14, m.vocab);
    const decode = (async () => {
      for (let i = 0; i < 4; i++) await short.forward([3 + i]);
    })();
    const solo = await generate(m.backend, longIds, { maxNewTokens: 1 });
    const [logits] = await Promise.all([long.prefill(longIds), decode]);
    expect(Array.from(logits)).toEqual(Array.from(solo.logits[0]!));
    // Some step carried a 4-token chunk of the long prompt beside a 1-token decode row, none more than 8 tokens.
    expect(calls.some((c) => c.includes(4) && c.includes(1))).toBe(true);
    expect(Math.max(...calls.map((c) => c.reduce((a, b) => a + b, 0)))).toBeLessThanOrEqual(8);
    expect(long.length).toBe(14);
    short.dispose();
    long.dispose();
  });

  it('a full queue refuses with SessionError queue-full, and the refused sequence keeps its cache', async () => {
    const m = models.longrope;
    const scheduler = new BatchScheduler(m.backend, { maxQueue: 1 });
    const a = scheduler.session();
    const b = scheduler.session();
    const first = a.prefill([1, 2, 3]);
    await expectRejection(b.prefill([4, 5]), SessionError, 'queue-full');
    await first;
    expect([a.length, b.length]).toEqual([3, 0]);
    // Room again once the step ran.
    await b.prefill([4, 5]);
    expect(b.length).toBe(2);
  });

  it('an abort while waiting or while its step runs rejects that sequence only, leaving its cache as it was', async () => {
    const m = models.longrope;
    const waiting = new AbortController();
    const running = new AbortController();
    const scheduler = new BatchScheduler(watched(m.backend, [], (_req, call) => call === 1 && running.abort(new Error('client left'))));
    const [x, y, z] = [scheduler.session(), scheduler.session(), scheduler.session()];
    await Promise.all([x.prefill([1, 2]), y.prefill([3, 4]), z.prefill([5, 6])]);
    const before = [snapshot(x.cache), snapshot(y.cache)];
    const solo = await generate(m.backend, [5, 6, 7], { maxNewTokens: 1 });
    const px = x.forward([9], { signal: waiting.signal });
    waiting.abort(new Error('gone'));
    const results = await Promise.allSettled([px, y.forward([9], { signal: running.signal }), z.forward([7])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toContain('gone');
    expect(String((results[1] as PromiseRejectedResult).reason)).toContain('client left');
    expect([snapshot(x.cache), snapshot(y.cache)]).toEqual(before);
    expect(Array.from((results[2] as PromiseFulfilledResult<Float32Array>).value)).toEqual(Array.from(solo.logits[0]!));
  });

  it('a backend failure in one sequence fails it alone: the merged step runs again forward by forward', async () => {
    const m = models.longrope;
    const poison = m.vocab - 1;
    const faulty: Backend = {
      ...m.backend,
      createCache: () => m.backend.createCache(),
      dispose: () => m.backend.dispose(),
      forward: (request) => (request.rows.some((r) => Array.from(r.tokens).includes(poison)) ? Promise.reject(new Error('kernel fault')) : m.backend.forward(request)),
    };
    const scheduler = new BatchScheduler(faulty);
    const sessions = [0, 1, 2].map(() => scheduler.session());
    await Promise.all(sessions.map((s, i) => s.prefill([1 + i, 2 + i])));
    const before = snapshot(sessions[1]!.cache);
    const results = await Promise.allSettled(sessions.map((s, i) => s.forward([i === 1 ? poison : 5])));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'BackendError', code: 'forward-failed' });
    expect(snapshot(sessions[1]!.cache)).toEqual(before);
    expect(sessions.map((s) => s.length)).toEqual([3, 2, 3]);
    expect(scheduler.stats.soloRetries).toBe(1);
  });

  it('a non-finite logit in one sequence of a merged step fails that sequence alone, with no rerun of the step', async () => {
    const m = models.longrope;
    const poison = m.vocab - 2;
    const nan: Backend = {
      ...m.backend,
      createCache: () => m.backend.createCache(),
      dispose: () => m.backend.dispose(),
      async forward(request) {
        const result = await m.backend.forward(request);
        request.rows.forEach((r, i) => Array.from(r.tokens).includes(poison) && result.rows[i]!.data.fill(Number.NaN));
        return result;
      },
    };
    const scheduler = new BatchScheduler(nan);
    const sessions = [0, 1, 2].map(() => scheduler.session());
    await Promise.all(sessions.map((s, i) => s.prefill([1 + i, 2 + i])));
    const before = snapshot(sessions[2]!.cache);
    const results = await Promise.allSettled(sessions.map((s, i) => s.forward([i === 2 ? poison : 5])));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ name: 'BackendError', code: 'nan-logits' });
    expect(snapshot(sessions[2]!.cache)).toEqual(before);
    expect(sessions.map((s) => s.length)).toEqual([3, 3, 2]);
    expect(scheduler.stats.soloRetries).toBe(0);
  });

  it('close() rejects what waits with scheduler-closed and refuses later forwards; bad options are typed errors', async () => {
    const m = models.longrope;
    const scheduler = new BatchScheduler(m.backend);
    const s = scheduler.session();
    const waiting = expectRejection(s.prefill([1, 2, 3]), SessionError, 'scheduler-closed');
    await scheduler.close();
    await waiting;
    await expectRejection(s.forward([1]), SessionError, 'scheduler-closed');
    expect(s.length).toBe(0);
    for (const bad of [{ maxRows: 0 }, { maxTokens: 1.5 }, { maxQueue: -1 }, { prefillChunk: 0 }]) {
      expect(() => new BatchScheduler(m.backend, bad)).toThrow(expect.objectContaining({ name: 'SessionError', code: 'bad-option' }));
    }
  });
});
