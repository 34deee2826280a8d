/**
 * Property-based fuzzing of the safetensors reader and the sharded-checkpoint index: mutated valid
 * files (bit flips, byte insertions and deletions, truncation at every length, rewritten header
 * lengths), headers with hostile entries (huge or overflowing shapes, out-of-file offsets, unknown
 * dtypes, prototype-polluting names) and arbitrary index files. Only a `WeightsError` may come
 * out; a file that opens yields tensors of exactly their declared size; no allocation exceeds
 * what the file's own size justifies; no file descriptor leaks.
 *
 * `FUZZ_RUNS` sets the runs per property (200 by default; `npm run fuzz` runs 10,000).
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fc, it } from '@fast-check/vitest';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { WeightsError } from '../errors.js';
import { MAX_HEADER_BYTES, openSafetensors, parseSafetensorsHeader } from './safetensors-reader.js';
import { encodeSafetensors, type TensorToWrite } from './safetensors-writer.js';
import { INDEX_FILE_NAME, loadWeights } from './load-weights.js';
import type { WeightStore } from './weight-store.js';
import type { TensorDtype } from './dtype.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 200);
const TIMEOUT = 30_000 + RUNS * 10;
const params = { numRuns: RUNS };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ropeswitch-st-fuzz-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Allocation and descriptor accounting

/** Bytes of every typed array or ArrayBuffer constructed with a length while `fn` runs (synchronously). */
function trackAllocations<T>(fn: () => T): { result: T; largest: number } {
  const g = globalThis as unknown as Record<string, unknown>;
  const names = ['ArrayBuffer', 'Uint8Array', 'Uint16Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'Int32Array'] as const;
  const originals = names.map((n) => g[n] as { BYTES_PER_ELEMENT?: number } & (new (...args: unknown[]) => object));
  let largest = 0;
  names.forEach((n, i) => {
    const ctor = originals[i]!;
    const unit = ctor.BYTES_PER_ELEMENT ?? 1;
    g[n] = new Proxy(ctor, {
      construct(target, args, newTarget) {
        if (typeof args[0] === 'number') largest = Math.max(largest, args[0] * unit);
        return Reflect.construct(target, args, newTarget === g[n] ? target : newTarget);
      },
    });
  });
  try {
    return { result: fn(), largest };
  } finally {
    names.forEach((n, i) => (g[n] = originals[i]));
  }
}

const FD_DIR = '/proc/self/fd';
const openFds = (): number => (existsSync(FD_DIR) ? readdirSync(FD_DIR).length : 0);

// ---------------------------------------------------------------------------------------------
// Valid files and their mutations

const tensorSpec = fc.record({
  name: fc.oneof(
    fc.constantFrom('w', 'model.embed_tokens.weight', 'lm_head.weight', '__proto__', 'constructor', 'toString', '', ' ', 'é', '\u0000'),
    fc.string({ unit: 'grapheme', maxLength: 12 }),
  ),
  dtype: fc.constantFrom<TensorDtype>('F32', 'F16', 'BF16'),
  shape: fc.array(fc.nat({ max: 5 }), { maxLength: 3 }),
});

/** A valid file: 0–4 tensors with seeded values, optional string metadata. */
const validFile = fc
  .record({
    specs: fc.uniqueArray(tensorSpec, { selector: (t) => t.name, maxLength: 4 }),
    metadata: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }), { nil: undefined }),
  })
  .map(({ specs, metadata }) => {
    const tensors: TensorToWrite[] = specs
      .filter((s) => s.name !== '__metadata__')
      .map((s) => {
        const n = s.shape.reduce((a, b) => a * b, 1);
        return { ...s, data: Float32Array.from({ length: n }, (_, i) => (i % 7) - 3.25) };
      });
    return { tensors, bytes: encodeSafetensors(tensors, metadata) };
  });

const hostileNumber = fc.oneof(
  fc.constantFrom(-1, -0, 0.5, 1.5, NaN, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e300, Number.MAX_SAFE_INTEGER, MAX_HEADER_BYTES + 1),
  fc.integer({ min: -16, max: 4096 }),
);
const hostileShape = fc.oneof(
  fc.constantFrom([2 ** 31, 2 ** 31, 2 ** 31], [2 ** 53], [2 ** 26, 2 ** 26], [2 ** 18, 2 ** 20], [-1], [1.5], ['3'], [null], [[2]], [], [0], [0, 2 ** 60]),
  fc.array(hostileNumber, { maxLength: 4 }),
);
const hostileOffsets = fc.oneof(
  fc.constantFrom([0, 2 ** 40], [2 ** 53, 2 ** 53 + 8], [-4, 0], [5, 1], [0], [0, 4, 8], 'x', null, [0, 1e300], [0, NaN], [2 ** 64, 2 ** 64]),
  fc.tuple(hostileNumber, hostileNumber),
);
const hostileDtype = fc.constantFrom('I64', 'F64', 'U8', 'BOOL', 'F8_E4M3', 'f32', 'bf16', '', 123, null, ['F32'], { dtype: 'F32' });

/** One edit of a header entry's fields, or of the header object itself. */
const headerEdit = fc.oneof(
  fc.record({ kind: fc.constant('dtype' as const), value: hostileDtype }),
  fc.record({ kind: fc.constant('shape' as const), value: hostileShape }),
  fc.record({ kind: fc.constant('offsets' as const), value: hostileOffsets }),
  fc.record({ kind: fc.constant('drop-field' as const), value: fc.constantFrom('dtype', 'shape', 'data_offsets') }),
  fc.record({ kind: fc.constant('entry' as const), value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant({ dtype: 'F32', shape: [1], data_offsets: [0, 4] })) }),
  fc.record({ kind: fc.constant('add' as const), value: fc.tuple(fc.constantFrom('__proto__', 'constructor', '__metadata__', 'x', 'hasOwnProperty'), fc.jsonValue({ maxDepth: 2 })) }),
);

type HeaderEdit = typeof headerEdit extends fc.Arbitrary<infer T> ? T : never;

/** Byte-level mutations of a whole file. */
const byteMutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({
    kind: fc.constant('header-length' as const),
    value: fc.oneof(
      fc.constantFrom(0n, 1n, 2n ** 32n, 2n ** 40n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(MAX_HEADER_BYTES), BigInt(MAX_HEADER_BYTES) + 1n),
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.bigInt({ min: 0n, max: 600n }),
    ),
  }),
);

type ByteMutation = typeof byteMutation extends fc.Arbitrary<infer T> ? T : never;

function applyByteMutation(bytes: Uint8Array, m: ByteMutation): Uint8Array {
  const n = bytes.length;
  switch (m.kind) {
    case 'flip': {
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[m.at % n]! ^= 1 << m.bit;
      return out;
    }
    case 'set': {
      if (n === 0) return bytes;
      const out = bytes.slice();
      out[m.at % n] = m.value;
      return out;
    }
    case 'insert': {
      const at = m.at % (n + 1);
      return concat(bytes.subarray(0, at), m.bytes, bytes.subarray(at));
    }
    case 'delete': {
      const at = m.at % (n + 1);
      return concat(bytes.subarray(0, at), bytes.subarray(at + m.count));
    }
    case 'truncate':
      return bytes.slice(0, m.at % (n + 1));
    case 'append':
      return concat(bytes, m.bytes);
    case 'header-length': {
      if (n < 8) return bytes;
      const out = bytes.slice();
      new DataView(out.buffer).setBigUint64(0, m.value, true);
      return out;
    }
  }
}

/** Re-encodes `bytes` (a valid file) with its header JSON edited; the u64 length matches the new header. */
function applyHeaderEdits(bytes: Uint8Array, edits: readonly HeaderEdit[], target: number): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, unknown>;
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  for (const e of edits) {
    const name = names.length > 0 ? names[target % names.length]! : undefined;
    const value = name !== undefined ? header[name] : undefined;
    // An earlier 'entry' edit may have replaced the entry by a non-object: field edits then skip it.
    const entry = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
    const own = (obj: Record<string, unknown>, key: string, value: unknown) =>
      Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
    switch (e.kind) {
      case 'dtype':
        if (entry) entry['dtype'] = e.value;
        break;
      case 'shape':
        if (entry) entry['shape'] = e.value;
        break;
      case 'offsets':
        if (entry) entry['data_offsets'] = e.value;
        break;
      case 'drop-field':
        if (entry) delete entry[e.value];
        break;
      case 'entry':
        if (name !== undefined) header[name] = e.value;
        break;
      case 'add':
        own(header, e.value[0], e.value[1]);
        break;
    }
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = concat(new Uint8Array(8), json, bytes.subarray(8 + headerLength));
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The property

let fileCounter = 0;

/**
 * Opens `bytes` as a file: it opens and every tensor decodes to exactly its declared element count
 * (with and without a matching expected shape), or a WeightsError comes out naming the file. No
 * allocation is larger than twice the file plus 64 KiB (F16/BF16 decode to float32 doubles a
 * tensor), and no descriptor stays open.
 */
async function openOrWeightsError(bytes: Uint8Array, extraShape?: readonly number[]): Promise<'opened' | string> {
  const path = join(dir, `f${fileCounter++ % 8}.safetensors`);
  writeFileSync(path, bytes);
  const fds = openFds();
  const bound = 2 * bytes.length + 65536;
  let outcome: 'opened' | string;
  // openSafetensors has no await inside: its whole body runs within trackAllocations.
  const opened = trackAllocations(() => openSafetensors(path));
  expect(opened.largest, 'allocation while opening').toBeLessThanOrEqual(bound);
  let store: WeightStore | undefined;
  try {
    store = await opened.result;
    outcome = 'opened';
  } catch (err) {
    if (!(err instanceof WeightsError)) throw new Error(`not a WeightsError: ${String(err)}`, { cause: err });
    expect(err.file).toBe(path);
    expect(err.message).toContain(path);
    outcome = err.code;
  }
  if (store) {
    const s = store;
    for (const name of s.names) {
      const info = s.info(name);
      const count = info.shape.reduce((a, b) => a * b, 1);
      const got = trackAllocations(() => s.get(name));
      expect(got.largest, `allocation reading ${name}`).toBeLessThanOrEqual(bound);
      expect(got.result).toBeInstanceOf(Float32Array);
      expect(got.result.length).toBe(count);
      expect(s.get(name, info.shape).length).toBe(count);
      if (extraShape) {
        try {
          s.get(name, extraShape);
        } catch (err) {
          expect(err).toBeInstanceOf(WeightsError);
        }
      }
    }
    await s.close();
    for (const name of s.names) expect(() => s.get(name)).toThrow(expect.objectContaining({ code: 'closed' }));
  }
  expect(openFds(), 'file descriptors').toBe(fds);
  return outcome;
}

describe('openSafetensors under fuzzing: tensors of their declared size or a WeightsError, nothing else', () => {
  it.prop([validFile], params)('valid files open and round-trip', async ({ tensors, bytes }) => {
    expect(await openOrWeightsError(bytes)).toBe('opened');
    const path = join(dir, `f${(fileCounter - 1) % 8}.safetensors`);
    const store = await openSafetensors(path);
    for (const t of tensors) {
      const back = store.get(t.name, t.shape);
      const tol = t.dtype === 'F32' ? 0 : 0.02;
      back.forEach((v, i) => expect(Math.abs(v - t.data[i]!)).toBeLessThanOrEqual(tol));
    }
    await store.close();
  }, TIMEOUT);

  it.prop([validFile, fc.array(byteMutation, { minLength: 1, maxLength: 4 }), fc.array(fc.nat({ max: 8 }), { maxLength: 3 })], params)(
    'mutated files: bit flips, byte sets, insertions, deletions, truncations, appended bytes, rewritten header lengths',
    async ({ bytes }, mutations, extraShape) => {
      let mutated = bytes;
      for (const m of mutations) mutated = applyByteMutation(mutated, m);
      await openOrWeightsError(mutated, extraShape);
    },
    TIMEOUT,
  );

  it.prop([validFile, fc.nat()], params)('truncated at every length of a valid file', async ({ bytes }, at) => {
    const cut = at % Math.max(1, bytes.length);
    // Every proper prefix is broken: too short, a header cut off, or a data section missing bytes.
    expect(await openOrWeightsError(bytes.slice(0, cut))).not.toBe('opened');
  }, TIMEOUT);

  it.prop([validFile.filter((f) => f.tensors.length > 0), fc.array(headerEdit, { minLength: 1, maxLength: 3 }), fc.nat()], params)(
    'headers with hostile entries: huge and overflowing shapes, offsets past the file, unknown dtypes, polluting names',
    async ({ bytes }, edits, target) => {
      await openOrWeightsError(applyHeaderEdits(bytes, edits, target));
    },
    TIMEOUT,
  );

  it.prop([fc.uint8Array({ maxLength: 300 })], params)('arbitrary bytes', async (bytes) => {
    await openOrWeightsError(bytes);
  }, TIMEOUT);

  it('a file declaring 1 TiB (header length 2^40, or a tensor of 2^40 bytes) fails fast without allocating it', async () => {
    const started = performance.now();
    const small = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2) }]);
    const hugeLength = small.slice();
    new DataView(hugeLength.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(await openOrWeightsError(hugeLength)).toBe('bad-header-length');
    const hugeTensor = applyHeaderEdits(small, [{ kind: 'shape', value: [2 ** 18, 2 ** 20] }, { kind: 'offsets', value: [0, 2 ** 40] }], 0);
    expect(await openOrWeightsError(hugeTensor)).toBe('truncated');
    const overflow = applyHeaderEdits(small, [{ kind: 'shape', value: [2 ** 31, 2 ** 31, 2 ** 31] }, { kind: 'offsets', value: [0, 8] }], 0);
    expect(await openOrWeightsError(overflow)).toBe('size-mismatch');
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('the allocation tracker and a regression found by fuzzing', () => {
  it("sees the reader's own allocations (so a bound it passes means something)", async () => {
    const path = join(dir, 'tracked.safetensors');
    writeFileSync(path, encodeSafetensors([{ name: 'w', dtype: 'BF16', shape: [64, 64], data: new Float32Array(4096) }]));
    const store = await openSafetensors(path);
    expect(trackAllocations(() => store.get('w')).largest).toBe(4096 * 4); // bf16 bytes read, then float32 out
    await store.close();
  });

  it("a tensor named '__proto__' is written as a key (the writer used to set the header's prototype and write a corrupt file)", async () => {
    const tensors: TensorToWrite[] = [
      { name: '__proto__', dtype: 'F32', shape: [1], data: new Float32Array([-3.25]) },
      { name: 'constructor', dtype: 'F16', shape: [2], data: new Float32Array([1, 2]) },
    ];
    const path = join(dir, 'proto.safetensors');
    writeFileSync(path, encodeSafetensors(tensors));
    const store = await openSafetensors(path);
    expect([...store.names]).toEqual(['__proto__', 'constructor']);
    expect(Array.from(store.get('__proto__', [1]))).toEqual([-3.25]);
    expect(Array.from(store.get('constructor', [2]))).toEqual([1, 2]);
    await store.close();
    expect(() => encodeSafetensors([tensors[0]!, tensors[0]!])).toThrow(expect.objectContaining({ code: 'bad-tensor' }));
  });
});

describe('parseSafetensorsHeader under fuzzing', () => {
  it.prop([fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue({ maxDepth: 4 }).map((v) => new TextEncoder().encode(JSON.stringify(v)))), fc.nat({ max: 1 << 20 })], params)(
    'any header bytes and any file size: entries that tile the data section, or a WeightsError',
    (header, extra) => {
      const fileSize = 8 + header.byteLength + extra;
      let entries;
      try {
        entries = parseSafetensorsHeader(header, fileSize, 'mem');
      } catch (err) {
        if (!(err instanceof WeightsError)) throw new Error(`not a WeightsError: ${String(err)}`, { cause: err });
        return;
      }
      let next = 0;
      for (const e of entries.values()) {
        expect(e.begin).toBe(next);
        next = e.end;
      }
      expect(next).toBe(extra);
    },
    TIMEOUT,
  );
});

describe('loadWeights (sharded index) under fuzzing', () => {
  const shard = encodeSafetensors([
    { name: 'a', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
    { name: 'b', dtype: 'BF16', shape: [1, 2], data: new Float32Array([3, 4]) },
  ]);
  const shardName = fc.oneof(
    fc.constantFrom('model-00001.safetensors', 'model-00002.safetensors', '../model-00001.safetensors', '/etc/passwd', '', '.', '..', 'a\u0000b', 'sub/x', 'C:\\x', 'missing.safetensors', INDEX_FILE_NAME),
    fc.string({ maxLength: 10 }),
  );
  const weightMap = fc.dictionary(fc.oneof(fc.constantFrom('a', 'b', 'c', '__proto__', 'constructor'), fc.string({ maxLength: 4 })), fc.oneof(shardName, fc.jsonValue({ maxDepth: 1 })), { maxKeys: 5 });
  const indexText = fc.oneof(
    weightMap.map((m) => JSON.stringify({ metadata: { total_size: 12 }, weight_map: m })),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.string({ unit: 'binary', maxLength: 100 }),
  );

  it.prop([indexText], params)('any index file: a store whose every tensor reads, or a WeightsError', async (text) => {
    const sub = await mkdtemp(join(dir, 'sharded-'));
    try {
      writeFileSync(join(sub, 'model-00001.safetensors'), shard);
      writeFileSync(join(sub, 'model-00002.safetensors'), shard.subarray(0, 20));
      writeFileSync(join(sub, INDEX_FILE_NAME), text);
      const fds = openFds();
      let store: WeightStore | undefined;
      try {
        store = await loadWeights(sub);
      } catch (err) {
        if (!(err instanceof WeightsError)) throw new Error(`not a WeightsError: ${String(err)}`, { cause: err });
      }
      if (store) {
        for (const n of store.names) expect(store.get(n).length).toBe(store.info(n).shape.reduce((x, y) => x * y, 1));
        await store.close();
      }
      expect(openFds()).toBe(fds);
    } finally {
      await rm(sub, { recursive: true, force: true });
    }
  }, TIMEOUT);
});
