import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { Backend, ForwardRequest, ForwardResult } from '../backend/backend.js';
import { CpuKvCache } from '../cache/cpu-kv-cache.js';
import type { KvCache } from '../cache/kv-cache.js';
import { parseModelConfig } from '../config/parse-config.js';
import { BackendError, PolicyError } from '../errors.js';
import { createRopeSchedule } from '../rope/create-schedule.js';
import {
  TINY_LONGROPE_JSON,
  type TinyModel,
  logging,
  randomIds,
  snapshot,
  tinyLongRope,
} from '@ropeswitch/testkit';
import type { CachePolicy, PolicyRequest, PolicyRow } from './cache-policy.js';
import { wrapBackend } from './wrap-backend.js';

const config = parseModelConfig(TINY_LONGROPE_JSON);
const schedule = createRopeSchedule(config.rope);
const layout = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim };

interface StubBackend extends Backend {
  readonly calls: number[][];
  /** A backend that keeps per-sequence state itself (a SequenceReleaser): the wrapper calls it after its policies. */
  releaseSequence?(cache: KvCache): void;
  forward: ReturnType<typeof vi.fn<(request: ForwardRequest) => Promise<ForwardResult>>>;
}

/** A backend that returns each row's tokens as its "logits" and records each call's row tags. */
function stubBackend(options: { maxRows?: number; fail?: unknown; rerotate?: boolean } = {}): StubBackend {
  const calls: number[][] = [];
  const stub: StubBackend = {
    name: 'stub',
    config,
    capabilities: { cacheLocation: 'cpu', maxRows: options.maxRows ?? Infinity, rerotateKeys: options.rerotate ?? false, anglePrecision: 'float32' },
    calls,
    createCache: () => new CpuKvCache(layout),
    forward: vi.fn(async (req: ForwardRequest) => {
      calls.push(req.rows.map((r) => r.tokens[0]!));
      if (options.fail !== undefined) throw options.fail;
      return { rows: req.rows.map((r) => logitsRow(r.tokens[0]!)) };
    }),
    dispose: vi.fn(async () => {}),
  };
  if (options.rerotate) stub.rerotateKeys = vi.fn(async () => {});
  return stub;
}

/** One position of logits over the vocabulary, the first holding `tag` (so results can be told apart). */
const logitsRow = (tag: number) => {
  const data = new Float32Array(config.vocabSize);
  data[0] = tag;
  return { count: 1, vocabSize: config.vocabSize, data };
};
const row = (tag: number): PolicyRow => ({ tokens: [tag], positions: [0], cache: new CpuKvCache(layout), regime: schedule.regimeFor(1) });
const request = (...tags: number[]): PolicyRequest => ({ rows: tags.map(row) });
const tags = (result: ForwardResult): number[] => result.rows.map((r) => r.data[0]!);

let model: TinyModel;
beforeAll(async () => {
  model = await tinyLongRope();
});

describe('wrapBackend', () => {
  it('works with zero policies: bit for bit the bare backend, logits and cache', async () => {
    const ids = randomIds(1, 20, model.vocab);
    const wrapped = wrapBackend(model.backend);
    expect(wrapped.policies).toEqual([]);
    expect(wrapped.inner).toBe(model.backend);
    expect(wrapped.name).toBe(model.backend.name);
    expect(wrapped.config).toBe(model.backend.config);
    expect(wrapped.capabilities).toBe(model.backend.capabilities);

    const run = async (b: Backend) => {
      const cache = b.createCache();
      const logits: Float32Array[] = [];
      // A short prefill, then decode steps across the threshold (S = 17): stale, like a bare loop.
      const first = await b.forward({ rows: [{ tokens: ids.slice(0, 12), positions: Int32Array.from({ length: 12 }, (_, i) => i), cache, regime: schedule.regimeFor(12), logits: 12 }] });
      logits.push(first.rows[0]!.data);
      for (let i = 12; i < ids.length; i++) {
        const out = await b.forward({ rows: [{ tokens: [ids[i]!], positions: [i], cache, regime: schedule.regimeFor(i + 1) }] });
        logits.push(out.rows[0]!.data);
      }
      return { logits, cache: snapshot(cache) };
    };
    const bare = await run(model.backend);
    const viaWrapper = await run(wrapped);
    expect(viaWrapper.logits).toEqual(bare.logits);
    expect(viaWrapper.cache).toEqual(bare.cache);
    expect(viaWrapper.cache.spans).toEqual([
      [0, 16, 'longrope:short'],
      [16, 20, 'longrope:long'],
    ]);
  });

  it('hands policies the backend under the chain and the schedule of its config', async () => {
    const inner = stubBackend();
    let seen: { backend: Backend; threshold: number | undefined; type: string } | undefined;
    const spy: CachePolicy = {
      name: 'spy',
      wrapForward: (o) => {
        seen = { backend: o.backend, threshold: o.schedule.threshold, type: o.schedule.type };
        return o.next(o.request);
      },
    };
    await wrapBackend(inner, spy).forward(request(1));
    expect(seen).toEqual({ backend: inner, threshold: 16, type: 'longrope' });
  });

  it('runs the first policy first; the last one sits on the backend', async () => {
    const log: string[] = [];
    const inner = stubBackend();
    inner.forward.mockImplementation(async (req) => {
      log.push('backend');
      return { rows: req.rows.map(() => logitsRow(0)) };
    });
    await wrapBackend(inner, logging('a', log), logging('b', log)).forward(request(1));
    expect(log).toEqual(['a>', 'b>', 'backend', '<b', '<a']);
  });

  it('does not mutate the input policies array; later changes to it have no effect; its own list is frozen', async () => {
    const log: string[] = [];
    const list: CachePolicy[] = [logging('a', log), logging('b', log)];
    const wrapped = wrapBackend(stubBackend(), ...list);
    list.pop();
    list.unshift({ name: 'late', wrapForward: () => Promise.reject(new Error('added later')) });
    await wrapped.forward(request(1));
    expect(log).toEqual(['a>', 'b>', '<b', '<a']);
    expect(wrapped.policies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(Object.isFrozen(wrapped.policies)).toBe(true);
    expect(list.map((p) => p.name)).toEqual(['late', 'a']);
  });

  it('rejects with PolicyError next-twice when a policy calls next twice; the backend ran once', async () => {
    const inner = stubBackend();
    const twice: CachePolicy = {
      name: 'twice',
      async wrapForward({ request: req, next }) {
        await next(req);
        return next(req);
      },
    };
    await expect(wrapBackend(inner, twice).forward(request(1))).rejects.toMatchObject({ name: 'PolicyError', code: 'next-twice' });
    expect(inner.forward).toHaveBeenCalledTimes(1);
  });

  it('propagates errors thrown before next (the backend never runs) and after next', async () => {
    const boom = new Error('boom');
    const before = stubBackend();
    await expect(wrapBackend(before, { name: 'before', wrapForward: () => Promise.reject(boom) }).forward(request(1))).rejects.toBe(boom);
    expect(before.forward).not.toHaveBeenCalled();

    const after = stubBackend();
    const late: CachePolicy = {
      name: 'after',
      async wrapForward({ request: req, next }) {
        await next(req);
        throw boom;
      },
    };
    await expect(wrapBackend(after, late).forward(request(1))).rejects.toBe(boom);
    expect(after.forward).toHaveBeenCalledTimes(1);
  });

  it('rejects a policy result with the wrong number of rows with PolicyError bad-result', async () => {
    const wrong: CachePolicy = { name: 'wrong', wrapForward: async ({ request: req, next }) => ({ rows: (await next(req)).rows.slice(1) }) };
    await expect(wrapBackend(stubBackend(), wrong).forward(request(1, 2))).rejects.toMatchObject({ name: 'PolicyError', code: 'bad-result' });
  });

  it('rejects a backend result with the wrong number of rows with BackendError bad-result', async () => {
    const inner = stubBackend();
    inner.forward.mockResolvedValueOnce({ rows: [] });
    await expect(wrapBackend(inner).forward(request(1))).rejects.toMatchObject({ name: 'BackendError', code: 'bad-result' });
  });

  it('rejects logits of the wrong shape with BackendError bad-result', async () => {
    const inner = stubBackend();
    inner.forward.mockResolvedValueOnce({ rows: [{ count: 1, vocabSize: 1, data: new Float32Array(1) }] });
    await expect(wrapBackend(inner).forward(request(1))).rejects.toMatchObject({ name: 'BackendError', code: 'bad-result' });
  });

  it('rejects a NaN logit with BackendError nan-logits naming the sequence length, and crops what the backend committed', async () => {
    const cache = model.backend.createCache();
    const wrapped = wrapBackend({
      name: 'nan-injecting',
      config: model.backend.config,
      capabilities: model.backend.capabilities,
      dispose: async () => {},
      forward: async (req) => {
        const out = await model.backend.forward(req); // commits the row
        out.rows[0]!.data[3] = Number.NaN;
        return out;
      },
      createCache: () => model.backend.createCache(),
    });
    const ok = wrapBackend(model.backend);
    await ok.forward({ rows: [{ tokens: [1, 2, 3], positions: [0, 1, 2], cache, regime: schedule.regimeFor(3) }] });
    const before = snapshot(cache);
    const err = await wrapped.forward({ rows: [{ tokens: [4], positions: [3], cache, regime: schedule.regimeFor(4) }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toMatchObject({ code: 'nan-logits' });
    expect((err as Error).message).toContain('sequence length 4');
    expect(snapshot(cache)).toEqual(before);
  });

  it('rejects arguments that are not policies', () => {
    for (const bad of [null, 3, {}, { name: 'x', wrapForward: 1 }]) {
      expect(() => wrapBackend(stubBackend(), bad as unknown as CachePolicy)).toThrow(PolicyError);
    }
  });

  it('nests: wrapping a wrapped backend runs the outer chain first, then the inner one, then the backend', async () => {
    const log: string[] = [];
    const base = stubBackend({ rerotate: true });
    base.forward.mockImplementation(async (req) => {
      log.push('backend');
      return { rows: req.rows.map(() => logitsRow(0)) };
    });
    const innerWrap = wrapBackend(base, logging('inner', log));
    const seen: Backend[] = [];
    const outerWrap = wrapBackend(innerWrap, logging('outer1', log), { name: 'peek', wrapForward: (o) => (seen.push(o.backend), o.next(o.request)) });
    await outerWrap.forward(request(1));
    expect(log).toEqual(['outer1>', 'inner>', 'backend', '<inner', '<outer1']);
    expect(seen).toEqual([innerWrap]);
    expect(outerWrap.inner).toBe(innerWrap);
    // The capability survives nesting, and reaches the backend at the bottom.
    expect(outerWrap.rerotateKeys).toBeTypeOf('function');
    const cache = base.createCache();
    await outerWrap.rerotateKeys!(cache, schedule.regimeFor(17));
    expect(base.rerotateKeys).toHaveBeenCalledWith(cache, schedule.regimeFor(17));
  });

  it('has no rerotateKeys when the backend has none', () => {
    expect(wrapBackend(stubBackend()).rerotateKeys).toBeUndefined();
    expect(wrapBackend(stubBackend({ rerotate: true })).rerotateKeys).toBeTypeOf('function');
  });

  it('passes prepareRerotation through nested wrappers to the backend, and has none when the backend has none', async () => {
    const base = stubBackend({ rerotate: true });
    expect(wrapBackend(base).prepareRerotation).toBeUndefined();
    base.prepareRerotation = vi.fn(async () => {});
    const wrapped = wrapBackend(wrapBackend(base));
    const [from, to] = [schedule.regimeFor(1), schedule.regimeFor(17)];
    await wrapped.prepareRerotation!(from, to, 16);
    expect(base.prepareRerotation).toHaveBeenCalledWith(from, to, 16);
    expect(wrapBackend(stubBackend()).prepareRerotation).toBeUndefined();
  });

  it('splits a request over maxRows: one row per call with maxRows 1, results in order', async () => {
    const inner = stubBackend({ maxRows: 1 });
    const out = await wrapBackend(inner).forward(request(5, 6, 7));
    expect(inner.calls).toEqual([[5], [6], [7]]);
    expect(tags(out)).toEqual([5, 6, 7]);
  });

  it('splits rows a policy added: maxRows 2 and 5 rows give calls of 2, 2 and 1 rows', async () => {
    const inner = stubBackend({ maxRows: 2 });
    const triple: CachePolicy = {
      name: 'adds-rows',
      async wrapForward({ request: req, next }) {
        const out = await next({ ...req, rows: [row(10), row(11), row(12), ...req.rows] });
        return { rows: out.rows.slice(3) };
      },
    };
    const out = await wrapBackend(inner, triple).forward(request(1, 2));
    expect(inner.calls).toEqual([[10, 11], [12, 1], [2]]);
    expect(tags(out)).toEqual([1, 2]);
  });

  it('does not split a request that fits maxRows', async () => {
    const inner = stubBackend({ maxRows: 3 });
    await wrapBackend(inner).forward(request(1, 2, 3));
    expect(inner.calls).toEqual([[1, 2, 3]]);
  });

  it('releaseSequence reaches every policy, then the inner backend', () => {
    const calls: string[] = [];
    const cache: KvCache = new CpuKvCache(layout);
    const inner = stubBackend();
    inner.releaseSequence = (c) => calls.push(`backend:${c === cache}`);
    const spy = (name: string): CachePolicy => ({ name, releaseSequence: (c) => calls.push(`${name}:${c === cache}`) });
    wrapBackend(inner, spy('a'), { name: 'hookless' }, spy('b')).releaseSequence(cache);
    expect(calls).toEqual(['a:true', 'b:true', 'backend:true']);
  });

  it('releaseSequence reaches through nested wrappers', () => {
    const calls: string[] = [];
    const spy = (name: string): CachePolicy => ({ name, releaseSequence: () => calls.push(name) });
    const inner = stubBackend();
    inner.releaseSequence = () => calls.push('backend');
    wrapBackend(wrapBackend(inner, spy('inner')), spy('outer')).releaseSequence(new CpuKvCache(layout));
    expect(calls).toEqual(['outer', 'inner', 'backend']);
  });

  it('wraps an untyped backend error in BackendError forward-failed with the original as cause', async () => {
    const original = new TypeError('kernel exploded');
    const err = await wrapBackend(stubBackend({ fail: original })).forward(request(1, 2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).code).toBe('forward-failed');
    expect((err as BackendError).cause).toBe(original);
    expect((err as BackendError).message).toContain('kernel exploded');
    expect((err as BackendError).message).toContain('stub');
  });

  it('wraps a thrown non-Error value too', async () => {
    const err = await wrapBackend(stubBackend({ fail: 'a string' })).forward(request(1)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'BackendError', code: 'forward-failed', cause: 'a string' });
  });

  it('passes an AbortError through unchanged', async () => {
    const abort = new DOMException('stopped', 'AbortError');
    await expect(wrapBackend(stubBackend({ fail: abort })).forward(request(1))).rejects.toBe(abort);
  });

  it("passes the signal's own reason through unchanged, whatever it is", async () => {
    const controller = new AbortController();
    const reason = { why: 'user pressed stop' };
    controller.abort(reason);
    const inner = stubBackend({ fail: reason });
    await expect(wrapBackend(inner).forward({ ...request(1), signal: controller.signal })).rejects.toBe(reason);
  });

  it('aborts a real forward with the signal reason and leaves the cache as it was', async () => {
    const wrapped = wrapBackend(model.backend);
    const cache = wrapped.createCache();
    const controller = new AbortController();
    controller.abort();
    const err = await wrapped
      .forward({ rows: [{ tokens: [1, 2, 3], positions: [0, 1, 2], cache, regime: schedule.regimeFor(3) }], signal: controller.signal })
      .catch((e: unknown) => e);
    expect(err).toBe(controller.signal.reason);
    expect(cache.length).toBe(0);
  });

  it('passes typed errors through unchanged (a token outside the vocabulary)', async () => {
    const wrapped = wrapBackend(model.backend);
    const cache = wrapped.createCache();
    const err = await wrapped.forward({ rows: [{ tokens: [model.vocab], positions: [0], cache, regime: schedule.regimeFor(1) }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).code).toBe('token-out-of-range');
  });

  it('delegates createCache and dispose to the backend', async () => {
    const inner = stubBackend();
    const wrapped = wrapBackend(inner);
    expect(wrapped.createCache()).toBeInstanceOf(CpuKvCache);
    await wrapped.dispose();
    expect(inner.dispose).toHaveBeenCalledTimes(1);
  });
});
