import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, ForwardRequest, ForwardResult } from '../backend/backend.js';
import { PolicyError } from '../errors.js';
import { Session } from '../session/session.js';
import { type TinyModel, randomIds, snapshot, tinyLongRope } from '@ropeswitch/testkit';
import type { PolicyRow } from './cache-policy.js';
import { eventsOnly, forwardWithRewrites, rewriteRows } from './row-rewrite.js';
import { hasStaleKeys, lengthAfter } from './row-state.js';
import { wrapBackend } from './wrap-backend.js';

let model: TinyModel;
beforeAll(async () => {
  model = await tinyLongRope();
});

/** The README's example policy: re-prefill, written row by row. */
const myRePrefill = rewriteRows('my-re-prefill', (row, { backend }) => {
  if (!hasStaleKeys(row)) return undefined;
  const fresh = backend.createCache();
  const cat = (a: ArrayLike<number>, b: ArrayLike<number>) => Int32Array.from([...Array.from(a), ...Array.from(b)]);
  return {
    row: { ...row, tokens: cat(row.cache.tokens(), row.tokens), positions: cat(row.cache.positions(), row.positions), cache: fresh },
    onSuccess: () => row.cache.replaceWith(fresh),
    onFailure: () => fresh.dispose(),
    events: [{ type: 're-prefill', policy: 'my-re-prefill', regime: row.regime.id, tokens: row.cache.length + row.tokens.length, atLength: lengthAfter(row) }],
  };
});

/** A bare backend that records each call's row token counts and fails the calls `fail` names. */
function recorder(inner: Backend, calls: number[][], fail: (call: number) => boolean = () => false): Backend {
  return {
    ...inner,
    createCache: () => inner.createCache(),
    forward(request: ForwardRequest): Promise<ForwardResult> {
      calls.push(request.rows.map((r) => r.tokens.length));
      return fail(calls.length - 1) ? Promise.reject(new Error('boom')) : inner.forward(request);
    },
  };
}

describe('rewriteRows', () => {
  it('a ten-line re-prefill written with it crosses the threshold exactly: the oracle, bit for bit, with its event', async () => {
    const ids = randomIds(5, model.threshold + 4, model.vocab);
    const session = new Session(wrapBackend(model.backend, myRePrefill));
    await session.prefill(ids.slice(0, model.threshold - 2));
    let logits: Float32Array = new Float32Array(0);
    for (const id of ids.slice(model.threshold - 2)) logits = await session.forward([id]);
    // An exact cache equals a fresh prefill of the whole sequence under the long regime.
    const fresh = new Session(model.backend);
    const want = await fresh.prefill(ids);
    expect(Array.from(logits)).toEqual(Array.from(want));
    expect(snapshot(session.cache)).toEqual(snapshot(fresh.cache));
    expect(session.events.map((e) => [e.type, e.atLength])).toEqual([['re-prefill', model.threshold + 1]]);
    session.dispose();
    fresh.dispose();
  });

  it('asks about each row in order, awaiting an async rewriter before the next row', async () => {
    const asked: number[] = [];
    const policy = rewriteRows('ordered', async (row) => {
      asked.push(row.tokens[0]!);
      await new Promise((r) => setTimeout(r, row.tokens[0] === 1 ? 5 : 0));
      asked.push(-row.tokens[0]!);
      return undefined;
    });
    const rows: PolicyRow[] = [1, 2].map((t) => ({ tokens: [t], positions: [0], cache: model.backend.createCache(), regime: model.schedule.regimeFor(1) }));
    await wrapBackend(model.backend, policy).forward({ rows });
    expect(asked).toEqual([1, -1, 2, -2]);
  });

  it('extra rows run first in the same call, asking no logits, and their results are dropped', async () => {
    const calls: number[][] = [];
    const shadow = model.backend.createCache();
    const policy = rewriteRows('adds-a-row', (row) => ({ extra: [{ ...row, cache: shadow, tokens: [9, 9], positions: [0, 1], logits: 0 }] }));
    const cache = model.backend.createCache();
    const out = await wrapBackend(recorder(model.backend, calls), policy).forward({ rows: [{ tokens: [3], positions: [0], cache, regime: model.schedule.regimeFor(1) }] });
    expect(calls).toEqual([[2, 1]]);
    expect(out.rows).toHaveLength(1);
    expect(out.rows[0]!.count).toBe(1);
    expect([shadow.length, cache.length]).toEqual([2, 1]);
  });

  it('on failure runs every onFailure, never onSuccess, and names what it was doing in a PolicyError', async () => {
    const log: string[] = [];
    const policy = rewriteRows('fails', () => ({ onSuccess: () => log.push('success'), onFailure: () => log.push('failure'), doing: 'a test rewrite' }));
    const backend = wrapBackend(recorder(model.backend, [], () => true), policy);
    const err = await backend.forward({ rows: [{ tokens: [3], positions: [0], cache: model.backend.createCache(), regime: model.schedule.regimeFor(1) }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).code).toBe('forward-failed');
    expect((err as PolicyError).message).toContain('a test rewrite failed');
    expect(log).toEqual(['failure']);
  });

  it('passes a request with no rewrites on as it is, and eventsOnly gives no rewrite for no events', async () => {
    expect(eventsOnly([])).toBeUndefined();
    const request = { rows: [{ tokens: [3], positions: [0], cache: model.backend.createCache(), regime: model.schedule.regimeFor(1) }] };
    let passed: unknown;
    await forwardWithRewrites(request, async (r) => ((passed = r), { rows: [{ count: 1, vocabSize: 1, data: new Float32Array(1) }] }), [undefined]);
    expect(passed).toBe(request);
  });

  it('refuses a rewriter that is not a function, with a typed error', () => {
    expect(() => rewriteRows('x', 3 as never)).toThrow(expect.objectContaining({ name: 'PolicyError', code: 'not-a-policy' }));
  });
});
