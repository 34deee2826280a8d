import { describe, expect, it, vi } from 'vitest';
import type { Backend } from '../backend/backend.js';
import { CpuKvCache } from '../cache/cpu-kv-cache.js';
import { parseModelConfig } from '../config/parse-config.js';
import { PolicyError } from '../errors.js';
import { createRopeSchedule } from '../rope/create-schedule.js';
import { TINY_LONGROPE_JSON, logging } from '@ropeswitch/testkit';
import type { CachePolicy, ForwardNext, PolicyRequest, PolicyResult, PolicyRow } from './cache-policy.js';
import { composePolicies } from './compose-policies.js';

// Unit tests of the chain alone, in the spirit of koa-compose's: `next` is a stub, rows are tags.

const config = parseModelConfig(TINY_LONGROPE_JSON);
const schedule = createRopeSchedule(config.rope);
const backend = { name: 'stub', config } as unknown as Backend;
const layout = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, headDim: config.headDim };

const row = (tag: number): PolicyRow => ({ tokens: [tag], positions: [0], cache: new CpuKvCache(layout), regime: schedule.regimeFor(1) });
const request = (...tags: number[]): PolicyRequest => ({ rows: tags.map(row) });

/** A stub for the rest of the chain: one row of logits per request row, holding the row's tokens. */
function stubNext(log?: string[]) {
  return vi.fn<ForwardNext>(async (req) => {
    log?.push('next');
    return { rows: req.rows.map((r) => ({ count: 1, vocabSize: r.tokens.length, data: Float32Array.from(r.tokens) })) };
  });
}

function run(policy: CachePolicy, req: PolicyRequest, next: ForwardNext): Promise<PolicyResult> {
  return policy.wrapForward!({ request: req, next, backend, schedule });
}

const tagsOf = (result: PolicyResult): number[] => result.rows.map((r) => r.data[0]!);

describe('composePolicies', () => {
  it('works with zero policies: the request goes to next unchanged and its result comes back as is', async () => {
    const chain = composePolicies();
    expect(chain.name).toBe('pass-through');
    const next = stubNext();
    const req = request(3, 4);
    const expected: PolicyResult = { rows: [{ count: 1, vocabSize: 1, data: new Float32Array([9]) }, { count: 1, vocabSize: 1, data: new Float32Array([8]) }] };
    next.mockResolvedValueOnce(expected);
    const out = await run(chain, req, next);
    expect(out).toBe(expected);
    expect(next).toHaveBeenCalledTimes(1);
    expect(next.mock.calls[0]![0]).toBe(req);
  });

  it('runs the first policy first and unwinds in reverse order (entry and exit)', async () => {
    const log: string[] = [];
    const chain = composePolicies(logging('a', log), logging('b', log), logging('c', log));
    expect(chain.name).toBe('a → b → c');
    await run(chain, request(1), stubNext(log));
    expect(log).toEqual(['a>', 'b>', 'c>', 'next', '<c', '<b', '<a']);
  });

  it('skips policies without wrapForward', async () => {
    const log: string[] = [];
    const chain = composePolicies({ name: 'hookless' }, logging('a', log), { name: 'also-hookless', releaseSequence: () => {} });
    const out = await run(chain, request(5), stubNext(log));
    expect(log).toEqual(['a>', 'next', '<a']);
    expect(tagsOf(out)).toEqual([5]);
  });

  it('passes each policy the request as the previous one rewrote it', async () => {
    const seen: number[][] = [];
    const rewrite = (tag: number): CachePolicy => ({
      name: `to-${tag}`,
      wrapForward: ({ request: req, next }) => {
        seen.push(req.rows.map((r) => r.tokens[0]!));
        return next({ ...req, rows: req.rows.map((r) => ({ ...r, tokens: [tag] })) });
      },
    });
    const next = stubNext();
    const out = await run(composePolicies(rewrite(7), rewrite(8)), request(1, 2), next);
    expect(seen).toEqual([
      [1, 2],
      [7, 7],
    ]);
    expect(tagsOf(out)).toEqual([8, 8]);
  });

  it('does not mutate the input array, and later changes to it have no effect', async () => {
    const log: string[] = [];
    const a = logging('a', log);
    const b = logging('b', log);
    const list: CachePolicy[] = [a, b];
    const chain = composePolicies(...list);
    expect(list).toEqual([a, b]);
    list.reverse();
    list.push({ name: 'late', wrapForward: () => Promise.reject(new Error('added after composing')) });
    await run(chain, request(1), stubNext(log));
    expect(log).toEqual(['a>', 'b>', 'next', '<b', '<a']);
    expect(list.map((p) => p.name)).toEqual(['b', 'a', 'late']);
  });

  it('rejects with PolicyError next-twice when a policy calls next twice, and the rest of the chain ran once', async () => {
    const next = stubNext();
    let second: unknown;
    const twice: CachePolicy = {
      name: 'twice',
      async wrapForward({ request: req, next: n }) {
        const out = await n(req);
        try {
          await n(req);
        } catch (error) {
          second = error;
        }
        return out;
      },
    };
    const out = await run(composePolicies(twice), request(2), next);
    expect(tagsOf(out)).toEqual([2]);
    expect(second).toBeInstanceOf(PolicyError);
    expect((second as PolicyError).code).toBe('next-twice');
    expect((second as PolicyError).message).toContain('twice');
    expect(next).toHaveBeenCalledTimes(1);
  });

  it('propagates next-twice to the caller when the policy does not catch it', async () => {
    const twice: CachePolicy = {
      name: 'twice',
      async wrapForward({ request: req, next }) {
        await next(req);
        return next(req);
      },
    };
    await expect(run(composePolicies(twice), request(1), stubNext())).rejects.toMatchObject({ name: 'PolicyError', code: 'next-twice' });
  });

  it('gives each forward call a fresh next: the same chain runs many times', async () => {
    const next = stubNext();
    const chain = composePolicies(logging('a', []), logging('b', []));
    for (let i = 0; i < 3; i++) expect(tagsOf(await run(chain, request(i), next))).toEqual([i]);
    expect(next).toHaveBeenCalledTimes(3);
  });

  it('propagates an error thrown before next (sync or async) and never calls next', async () => {
    const boom = new Error('before next');
    const sync: CachePolicy = {
      name: 'sync',
      wrapForward: () => {
        throw boom;
      },
    };
    const async: CachePolicy = { name: 'async', wrapForward: async () => Promise.reject(boom) };
    for (const p of [sync, async]) {
      const next = stubNext();
      const log: string[] = [];
      await expect(run(composePolicies(logging('outer', log), p, logging('inner', log)), request(1), next)).rejects.toBe(boom);
      expect(next).not.toHaveBeenCalled();
      expect(log).toEqual(['outer>']);
    }
  });

  it('propagates an error thrown after next', async () => {
    const boom = new Error('after next');
    const after: CachePolicy = {
      name: 'after',
      async wrapForward({ request: req, next }) {
        await next(req);
        throw boom;
      },
    };
    const next = stubNext();
    await expect(run(composePolicies(after), request(1), next)).rejects.toBe(boom);
    expect(next).toHaveBeenCalledTimes(1);
  });

  it('propagates an error from the rest of the chain through every policy', async () => {
    const boom = new Error('backend failed');
    const log: string[] = [];
    const next = vi.fn<ForwardNext>(() => Promise.reject(boom));
    await expect(run(composePolicies(logging('a', log), logging('b', log)), request(1), next)).rejects.toBe(boom);
    expect(log).toEqual(['a>', 'b>']);
  });

  it('lets a policy catch a downstream error and answer instead', async () => {
    const rescue: CachePolicy = {
      name: 'rescue',
      async wrapForward({ request: req, next }) {
        try {
          return await next(req);
        } catch {
          return { rows: req.rows.map(() => ({ count: 1, vocabSize: 1, data: new Float32Array([-1]) })) };
        }
      },
    };
    const failing: CachePolicy = { name: 'failing', wrapForward: () => Promise.reject(new Error('no')) };
    expect(tagsOf(await run(composePolicies(rescue, failing), request(1, 2), stubNext()))).toEqual([-1, -1]);
  });

  it('rejects a result with the wrong number of rows with PolicyError bad-result, naming the policy', async () => {
    const short: CachePolicy = { name: 'short', wrapForward: async () => ({ rows: [] }) };
    const err = await run(composePolicies(short), request(1, 2), stubNext()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).code).toBe('bad-result');
    expect((err as PolicyError).message).toContain('short');

    const nothing: CachePolicy = { name: 'nothing', wrapForward: async () => undefined as unknown as PolicyResult };
    await expect(run(composePolicies(nothing), request(1), stubNext())).rejects.toMatchObject({ name: 'PolicyError', code: 'bad-result' });
  });

  it('rejects a wrong-sized result from the rest of the chain with bad-result before the policies see it', async () => {
    const log: string[] = [];
    const next = vi.fn<ForwardNext>(async () => ({ rows: [] }));
    const err = await run(composePolicies(logging('a', log)), request(1), next).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'PolicyError', code: 'bad-result' });
    expect((err as Error).message).toContain('the backend');
    expect(log).toEqual(['a>']);
  });

  it('rejects arguments that are not policies with PolicyError not-a-policy', () => {
    const bad: unknown[] = [null, undefined, 42, 'rePrefill', {}, { name: 7 }, { name: 'x', wrapForward: 'not a function' }];
    for (const b of bad) {
      let caught: unknown;
      try {
        composePolicies(b as CachePolicy);
      } catch (error) {
        caught = error;
      }
      expect(caught, String(b)).toBeInstanceOf(PolicyError);
      expect((caught as PolicyError).code).toBe('not-a-policy');
    }
    // A function (e.g. the factory instead of its result) is not a policy either.
    expect(() => composePolicies((() => ({ name: 'f' })) as unknown as CachePolicy)).toThrow(PolicyError);
  });

  it('nests: a composed chain inside another runs in place', async () => {
    const log: string[] = [];
    const inner = composePolicies(logging('b', log), logging('c', log));
    const chain = composePolicies(logging('a', log), inner, logging('d', log));
    await run(chain, request(1), stubNext(log));
    expect(log).toEqual(['a>', 'b>', 'c>', 'd>', 'next', '<d', '<c', '<b', '<a']);
  });

  it('releaseSequence reaches every policy that has one, in order', () => {
    const calls: string[] = [];
    const cache = new CpuKvCache(layout);
    const spy = (name: string): CachePolicy => ({ name, releaseSequence: (c) => calls.push(`${name}:${c === cache}`) });
    const chain = composePolicies(spy('a'), { name: 'none' }, composePolicies(spy('b'), spy('c')));
    chain.releaseSequence!(cache);
    expect(calls).toEqual(['a:true', 'b:true', 'c:true']);
  });
});
