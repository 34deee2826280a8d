import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Backend } from '../backend/backend.js';
import { BackendError, SessionError } from '../errors.js';
import { CacheRecord } from '../cache/cache-record.js';
import { CpuKvCache } from '../cache/cpu-kv-cache.js';
import { Float16KvCache } from '../cache/float16-kv-cache.js';
import type { KvCache } from '../cache/kv-cache.js';
import { wrapBackend } from '../policy/wrap-backend.js';
import { rePrefill, shadowPrefill } from '@ropeswitch/policies';
import { type TinyModel, appendRows, expectRejection, gpuLike, randomIds, recording, snapshot, spanIds, tinyLongRope } from '@ropeswitch/testkit';
import { PrefixCache } from './prefix-cache.js';
import { Session } from './session.js';

let model: TinyModel;
beforeAll(async () => {
  model = await tinyLongRope();
});
afterEach(() => {
  vi.restoreAllMocks();
});

const BIG = 2 ** 30;

/** `n` seeded ids whose first one is none of the first ids of `others`, so suffixes never share a token by chance. */
function suffix(seed: number, n: number, ...others: readonly number[][]): number[] {
  const ids = randomIds(seed, n, model.vocab);
  const taken = new Set(others.map((o) => o[0]));
  while (taken.has(ids[0])) ids[0] = (ids[0]! + 1) % model.vocab;
  return ids;
}

/** A cache of `ids` prefilled in one forward on `backend` (default: the bare tiny model). */
async function prefilled(ids: readonly number[], backend: Backend = model.backend): Promise<KvCache> {
  const session = new Session(backend);
  await session.prefill(ids);
  return session.cache;
}

/** Logits and cache of a fresh session (no prefix cache) on `backend`, for comparison. */
async function fresh(ids: readonly number[], logits = 1, backend: Backend = model.backend) {
  const session = new Session(backend);
  const out = await session.prefill(ids, { logits });
  return { logits: Array.from(out), cache: snapshot(session.cache) };
}

/** Checks that `fn` throws a SessionError with `code` (run as a promise, so testkit's check applies). */
const expectSessionError = (fn: () => unknown, code: string) => expectRejection(Promise.resolve().then(fn), SessionError, code);

describe('PrefixCache.take', () => {
  it('returns the longest common prefix over every entry, as a clone cropped to it; counts hits, misses and reused tokens', async () => {
    const sys = randomIds(1, 6, model.vocab);
    const a = [...sys, ...suffix(2, 5)];
    const b = [...sys, ...suffix(3, 3, a.slice(6))];
    const prefixes = new PrefixCache({ maxBytes: BIG });
    prefixes.put(await prefilled(a));
    prefixes.put(await prefilled(b));
    expect(prefixes.stats).toMatchObject({ entries: 2, hits: 0, misses: 0 });

    // Shares 9 tokens with a, 6 with b.
    const query = [...a.slice(0, 9), ...suffix(4, 4, a.slice(9))];
    const hit = prefixes.take(query, { regime: model.schedule.regimeFor(query.length) })!;
    expect(hit.length).toBe(9);
    expect(Array.from(hit.tokens())).toEqual(a.slice(0, 9));
    expect(Array.from(hit.positions())).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    const whole = await prefilled(a);
    whole.crop(9);
    expect(snapshot(hit)).toEqual(snapshot(whole));

    // At most maxLength tokens; nothing in common, or nothing allowed, is a miss.
    expect(prefixes.take(query, { regime: model.schedule.regimeFor(query.length), maxLength: 4 })!.length).toBe(4);
    expect(prefixes.take(query, { regime: model.schedule.regimeFor(query.length), maxLength: 0 })).toBeUndefined();
    const other = suffix(5, 8, sys);
    expect(prefixes.take(other, { regime: model.schedule.regimeFor(other.length) })).toBeUndefined();
    // By default a whole entry is not reused: one token is left to run.
    expect(prefixes.take(a, { regime: model.schedule.regimeFor(a.length) })!.length).toBe(a.length - 1);
    expect(prefixes.stats).toMatchObject({ hits: 3, misses: 2, hitTokens: 9 + 4 + a.length - 1, entries: 2 });
  });

  it('prefers an entry rotated under the asked regime over an equally long one that is not, whichever was used last', async () => {
    const wrapped = wrapBackend(model.backend, rePrefill());
    const sys = randomIds(6, 10, model.vocab);
    const short = [...sys, ...suffix(7, 3)]; // 13 ≤ 16: short keys
    const long = [...sys, ...suffix(8, 9, short.slice(10))]; // 19 > 16: long keys
    const query = [...sys, ...suffix(9, 4, short.slice(10), long.slice(10))];
    for (const order of [
      [short, long],
      [long, short],
    ]) {
      const prefixes = new PrefixCache({ maxBytes: BIG });
      for (const ids of order) prefixes.put(await prefilled(ids, wrapped));
      for (const [total, want] of [
        [12, 'longrope:short'],
        [20, 'longrope:long'],
      ] as const) {
        const regime = model.schedule.regimeFor(total);
        const hit = prefixes.take(query, { regime, otherRegimes: true })!;
        expect(hit.length).toBe(10);
        expect(spanIds(hit)).toEqual([want]);
      }
    }
  });

  it('counts a prefix whose keys another regime rotated as a miss unless otherRegimes, and judges only the reused part', async () => {
    const sys = randomIds(10, 8, model.vocab);
    const first = [...sys, ...suffix(11, 4)]; // 12: short
    const session = new Session(model.backend);
    await session.prefill(first);
    await session.prefill(suffix(12, 6)); // 18: the new keys long, the first 12 stay short (stale)
    expect(spanIds(session.cache)).toEqual(['longrope:short', 'longrope:long']);
    const prefixes = new PrefixCache({ maxBytes: BIG });
    prefixes.put(session.cache);
    const long = model.schedule.regimeFor(20);
    const short = model.schedule.regimeFor(12);
    const tokens = Array.from(session.tokens());
    // Within the short span: usable under the short regime as it is.
    expect(prefixes.take([...tokens.slice(0, 10), (tokens[10]! + 1) % model.vocab], { regime: short })?.length).toBe(10);
    expect(prefixes.take([...tokens.slice(0, 10), (tokens[10]! + 1) % model.vocab], { regime: long })).toBeUndefined();
    // Reaching into the long span: mixed, so under neither regime without a policy.
    expect(prefixes.take([...tokens, 1], { regime: long })).toBeUndefined();
    expect(prefixes.take([...tokens, 1], { regime: long, otherRegimes: true })?.length).toBe(18);
    expect(prefixes.stats).toMatchObject({ hits: 2, misses: 2 });
  });
});

describe('Session with a prefix cache', () => {
  it('a shared system prompt with different suffixes: the same logits and cache, bit for bit, as without a prefix cache; only the suffix runs', async () => {
    for (const [sysLength, regime] of [
      [8, 'longrope:short'],
      [12, 'longrope:long'],
    ] as const) {
      const rec = recording(model.backend);
      const prefixes = new PrefixCache({ maxBytes: BIG });
      const sys = randomIds(20 + sysLength, sysLength, model.vocab);
      const a = [...sys, ...suffix(21, 5)];
      await new Session(rec, { prefixCache: prefixes }).prefill(a);
      expect(prefixes.stats).toMatchObject({ hits: 0, misses: 1, entries: 1 });
      for (const [seed, n] of [
        [22, 6],
        [23, 7],
      ] as const) {
        const ids = [...sys, ...suffix(seed, n, a.slice(sysLength))];
        const session = new Session(rec, { prefixCache: prefixes });
        const logits = await session.prefill(ids, { logits: n });
        const last = rec.calls.at(-1)![0]!;
        expect(Array.from(last.tokens)).toEqual(ids.slice(sysLength));
        expect(last.positions[0]).toBe(sysLength);
        expect(last.regime).toBe(regime);
        const expected = await fresh(ids, n);
        expect(Array.from(logits)).toEqual(expected.logits);
        expect(snapshot(session.cache)).toEqual(expected.cache);
        expect(spanIds(session.cache)).toEqual([regime]);
      }
      expect(prefixes.stats).toMatchObject({ hits: 2, misses: 1, hitTokens: 2 * sysLength, entries: 3 });
    }
  });

  it('a hit is copied once, at the planned length: the prefill after it grows nothing', async () => {
    const sys = randomIds(11, 8, model.vocab);
    const prefixes = new PrefixCache({ maxBytes: BIG });
    prefixes.put(await prefilled([...sys, ...suffix(12, 3)]));
    const clone = vi.spyOn(CpuKvCache.prototype, 'clone');
    const grow = vi.spyOn(CacheRecord.prototype, 'grow');
    const ids = [...sys, ...suffix(13, 4, sys)];
    const session = new Session(model.backend, { prefixCache: prefixes });
    const logits = await session.prefill(ids, { plannedLength: ids.length + 20 });
    // take's copy (the hit), then put's copy (the entry): the first was made at the plan's size.
    expect(clone.mock.calls[0]).toEqual([{ length: 8, capacity: ids.length + 20 }]);
    expect((session.cache as CpuKvCache).capacity).toBe(ids.length + 20);
    // No cache grew (a grow copies every row again).
    expect(grow).not.toHaveBeenCalled();
    expect(Array.from(logits)).toEqual((await fresh(ids)).logits);
  });

  it('leaves the tokens whose logits are asked for to run: with logits of every position there is no hit', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const ids = randomIds(30, 10, model.vocab);
    await new Session(model.backend, { prefixCache: prefixes }).prefill(ids);
    const again = new Session(model.backend, { prefixCache: prefixes });
    const all = await again.prefill(ids, { logits: ids.length });
    expect(prefixes.stats).toMatchObject({ hits: 0, misses: 2 });
    expect(Array.from(all)).toEqual((await fresh(ids, ids.length)).logits);
    const three = new Session(model.backend, { prefixCache: prefixes });
    const logits = await three.prefill(ids, { logits: 3 });
    expect(prefixes.stats).toMatchObject({ hits: 1, hitTokens: 7 });
    expect(Array.from(logits)).toEqual((await fresh(ids, 3)).logits);
  });

  it('hands out clones: decoding on one session changes neither the entry nor another session that hits it', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const sys = randomIds(40, 9, model.vocab);
    const a = [...sys, ...suffix(41, 3)];
    await new Session(model.backend, { prefixCache: prefixes }).prefill(a);
    const entryBefore = snapshot(prefixes.take(a, { regime: model.schedule.regimeFor(a.length), maxLength: a.length })!);

    const b = [...sys, ...suffix(42, 4, a.slice(9))];
    const first = new Session(model.backend, { prefixCache: prefixes });
    await first.prefill(b);
    for (const id of [3, 5, 7, 11]) await first.forward([id]); // 17: crosses into long, stale over the bare backend
    first.cache.crop(2);

    const entryAfter = snapshot(prefixes.take(a, { regime: model.schedule.regimeFor(a.length), maxLength: a.length })!);
    expect(entryAfter).toEqual(entryBefore);
    const c = [...sys, ...suffix(43, 5, a.slice(9), b.slice(9))];
    const second = new Session(model.backend, { prefixCache: prefixes });
    const logits = await second.prefill(c, { logits: 5 });
    expect(prefixes.stats.hitTokens).toBe(2 * a.length + 9 + 9);
    const expected = await fresh(c, 5);
    expect(Array.from(logits)).toEqual(expected.logits);
    expect(snapshot(second.cache)).toEqual(expected.cache);
  });

  it('a prefix of the short regime for a prompt that crosses: a miss over a bare backend, a hit through rePrefill that equals a fresh session bit for bit', async () => {
    const sys = randomIds(50, 10, model.vocab);
    const a = [...sys, ...suffix(51, 4)]; // 14: short
    const b = [...sys, ...suffix(52, 8, a.slice(10))]; // 18: long
    const expectedBare = await fresh(b, 8);

    const bare = new PrefixCache({ maxBytes: BIG });
    await new Session(model.backend, { prefixCache: bare }).prefill(a);
    const s1 = new Session(model.backend, { prefixCache: bare });
    expect(Array.from(await s1.prefill(b, { logits: 8 }))).toEqual(expectedBare.logits);
    expect(snapshot(s1.cache)).toEqual(expectedBare.cache);
    expect(bare.stats).toMatchObject({ hits: 0, misses: 2 });

    for (const policy of [rePrefill, shadowPrefill]) {
      const wrapped = wrapBackend(model.backend, policy());
      const prefixes = new PrefixCache({ maxBytes: BIG });
      await new Session(wrapped, { prefixCache: prefixes }).prefill(a);
      const s2 = new Session(wrapped, { prefixCache: prefixes });
      const logits = await s2.prefill(b, { logits: 8 });
      // shadowPrefill also asks for a long-regime start of the first prompt's copy (a miss).
      expect(prefixes.stats, policy.name).toMatchObject({ hits: 1, misses: policy === shadowPrefill ? 2 : 1, hitTokens: 10 });
      const expected = await fresh(b, 8, wrapped);
      expect(Array.from(logits), policy.name).toEqual(expected.logits);
      expect(snapshot(s2.cache), policy.name).toEqual(expected.cache);
      expect(spanIds(s2.cache)).toEqual(['longrope:long']);
    }
  });

  it('a failed prefill after a hit leaves the session empty and the entry intact; the session works afterwards', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const sys = randomIds(60, 8, model.vocab);
    const a = [...sys, ...suffix(61, 4)];
    await new Session(model.backend, { prefixCache: prefixes }).prefill(a);
    const regime = model.schedule.regimeFor(a.length);
    const entry = snapshot(prefixes.take(a, { regime, maxLength: a.length })!);

    const session = new Session(wrapBackend(model.backend, rePrefill()), { prefixCache: prefixes });
    const error = await expectRejection(session.prefill([...sys, 2, model.vocab + 3]), BackendError, 'token-out-of-range');
    expect(error.message).toContain('outside the vocabulary');
    expect(session.length).toBe(0);
    expect(session.cache.regimeSpans()).toEqual([]);
    const aborted = new AbortController();
    aborted.abort(new Error('stop'));
    await expect(session.prefill([...sys, 2, 3], { signal: aborted.signal })).rejects.toThrow('stop');
    expect(session.length).toBe(0);
    expect(prefixes.stats).toMatchObject({ hits: 3, entries: 1 });
    expect(snapshot(prefixes.take(a, { regime, maxLength: a.length })!)).toEqual(entry);

    const b = [...sys, ...suffix(62, 5, a.slice(8))];
    const logits = await session.prefill(b);
    expect(prefixes.stats.hits).toBe(5);
    expect(Array.from(logits)).toEqual((await fresh(b)).logits);
  });

  it('a failed later chunk keeps the prefix and the chunks before it, as chunked prefills do', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const sys = randomIds(63, 6, model.vocab);
    await new Session(model.backend, { prefixCache: prefixes }).prefill([...sys, 1]);
    const session = new Session(model.backend, { prefixCache: prefixes, chunkSize: 3 });
    await expectRejection(session.prefill([...sys, 2, 3, 4, model.vocab]), BackendError, 'token-out-of-range');
    expect(Array.from(session.tokens())).toEqual([...sys, 2, 3, 4]);
  });

  it('stores every successful prefill, so the next turn of a chat hits the whole history', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const turn1 = randomIds(70, 6, model.vocab);
    const chat = new Session(model.backend, { prefixCache: prefixes });
    await chat.prefill(turn1);
    await chat.forward([1]);
    await chat.prefill([2, 3, 4]);
    // The second turn's sequence supersedes the first (a prefix under the same regime).
    expect(prefixes.stats.entries).toBe(1);
    const history = Array.from(chat.tokens());
    const resumed = new Session(model.backend, { prefixCache: prefixes });
    const logits = await resumed.prefill([...history, 5]);
    expect(prefixes.stats).toMatchObject({ hits: 1, hitTokens: history.length });
    expect(Array.from(logits)).toEqual((await fresh([...history, 5])).logits);
  });
});

describe('PrefixCache budget', () => {
  /** Three caches of 5 tokens each, no two sharing a first token, and the bytes of one stored clone. */
  async function three(): Promise<{ caches: KvCache[]; bytes: number }> {
    const caches = await Promise.all([0, 1, 2].map((i) => prefilled([i, ...randomIds(80 + i, 4, model.vocab)])));
    const probe = caches[0]!.clone();
    const bytes = probe.byteLength;
    probe.dispose();
    return { caches, bytes };
  }

  it('evicts least recently used entries to stay within maxBytes, disposing them; a take makes an entry recent', async () => {
    const { caches, bytes } = await three();
    const clone = vi.spyOn(CpuKvCache.prototype, 'clone');
    const prefixes = new PrefixCache({ maxBytes: 2 * bytes });
    prefixes.put(caches[0]!);
    prefixes.put(caches[1]!);
    const stored = clone.mock.results.map((r) => r.value as KvCache);
    expect(prefixes.stats).toMatchObject({ entries: 2, bytes: 2 * bytes, evictions: 0 });
    const regime = model.schedule.regimeFor(6);
    expect(prefixes.take([...caches[0]!.tokens(), 1], { regime })).toBeDefined(); // 0 is now the most recent
    prefixes.put(caches[2]!);
    expect(prefixes.stats).toMatchObject({ entries: 2, bytes: 2 * bytes, evictions: 1 });
    expect(stored[1]!.disposed).toBe(true);
    expect(stored[0]!.disposed).toBe(false);
    expect(prefixes.take([...caches[1]!.tokens(), 1], { regime })).toBeUndefined();
    expect(prefixes.take([...caches[0]!.tokens(), 1], { regime })).toBeDefined();
    expect(prefixes.take([...caches[2]!.tokens(), 1], { regime })).toBeDefined();
    // The callers' caches are theirs: untouched.
    expect(caches.map((c) => c.disposed)).toEqual([false, false, false]);

    prefixes.clear();
    expect(prefixes.stats).toMatchObject({ entries: 0, bytes: 0 });
    expect(stored[0]!.disposed).toBe(true);
  });

  it('does not store a cache larger than the whole budget, and counts it', async () => {
    const { caches, bytes } = await three();
    const clone = vi.spyOn(CpuKvCache.prototype, 'clone');
    const prefixes = new PrefixCache({ maxBytes: bytes - 1 });
    prefixes.put(caches[0]!);
    expect(prefixes.stats).toMatchObject({ entries: 0, bytes: 0, oversized: 1, evictions: 0 });
    expect((clone.mock.results[0]!.value as KvCache).disposed).toBe(true);
    expect(prefixes.take([...caches[0]!.tokens(), 1], { regime: model.schedule.regimeFor(6) })).toBeUndefined();
  });

  it('replaces an entry with the same tokens, and keeps nothing for a cache an entry already holds', async () => {
    const ids = randomIds(90, 8, model.vocab);
    const prefixes = new PrefixCache({ maxBytes: BIG });
    prefixes.put(await prefilled(ids));
    const bytes = prefixes.stats.bytes;
    prefixes.put(await prefilled(ids));
    expect(prefixes.stats).toMatchObject({ entries: 1, bytes });
    prefixes.put(await prefilled(ids.slice(0, 5)));
    expect(prefixes.stats).toMatchObject({ entries: 1, bytes });
  });

  it('after dispose, takes miss and puts store nothing', async () => {
    const ids = randomIds(91, 6, model.vocab);
    const prefixes = new PrefixCache({ maxBytes: BIG });
    prefixes.put(await prefilled(ids));
    prefixes.dispose();
    expect(prefixes.disposed).toBe(true);
    const session = new Session(model.backend, { prefixCache: prefixes });
    expect(Array.from(await session.prefill(ids))).toEqual((await fresh(ids)).logits);
    expect(prefixes.stats).toMatchObject({ entries: 0, bytes: 0, hits: 0, misses: 1 });
  });
});

describe('PrefixCache errors', () => {
  it('refuses a budget that is not a positive integer, and a bad maxLength, with SessionError bad-option', async () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, undefined as unknown as number]) {
      await expectSessionError(() => new PrefixCache({ maxBytes }), 'bad-option');
    }
    const prefixes = new PrefixCache({ maxBytes: 1024 });
    await expectSessionError(() => prefixes.take([1, 2], { regime: model.schedule.regimeFor(2), maxLength: -1 }), 'bad-option');
    await expectSessionError(() => prefixes.take([1, 2], { regime: model.schedule.regimeFor(2), maxLength: 0.5 }), 'bad-option');
  });

  it('refuses caches of another kind or layout, and sessions on another backend, with SessionError foreign-cache', async () => {
    const prefixes = new PrefixCache({ maxBytes: BIG });
    const cache = await prefilled([1, 2, 3]);
    prefixes.put(cache);
    const layout = cache.layout;
    const regime = model.schedule.regimeFor(3);
    const otherLayout = new CpuKvCache({ ...layout, headDim: layout.headDim * 2 });
    appendRows(otherLayout, 3, regime, () => 0.5, (i) => i + 1);
    await expectSessionError(() => prefixes.put(otherLayout), 'foreign-cache');
    // Same layout, another element type: it could not replace a float32 session cache.
    const half = new Float16KvCache(layout);
    appendRows(half, 3, regime, () => 0.5, (i) => i + 1);
    await expectSessionError(() => prefixes.put(half), 'foreign-cache');
    expect(prefixes.stats.entries).toBe(1);

    // Sessions tie it to their bare backend: wrappers of it are fine, another backend is not.
    new Session(model.backend, { prefixCache: prefixes });
    new Session(wrapBackend(model.backend, rePrefill()), { prefixCache: prefixes });
    await expectSessionError(() => new Session(gpuLike(model.backend), { prefixCache: prefixes }), 'foreign-cache');
  });
});
