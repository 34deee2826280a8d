import { BackendError, CpuKvCache, SeededRandom, rerotationTables, rotateBlocks, type RopeRegime } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TypeScriptKernels } from '../typescript-kernels.js';
import type { KvBlock, LinearWeights } from '../decoder-kernels.js';
import { threadSupport } from '../../threads/thread-support.js';
import { WEIGHT_DTYPES, roundWeights } from '../weight-dtype.js';
import { WasmArena } from './wasm-arena.js';
import { WasmKernels } from './wasm-kernels.js';

// The WebAssembly kernels against the TypeScript ones (the definition) on random inputs of odd
// sizes: matmul within float32 summation's error bound (the WebAssembly kernel sums in float32, the
// TypeScript one in float64), every weight dtype against the TypeScript kernel on the same rounded
// weights; a row's matmul bits the same alone or batched, on one thread or several; attention (GQA,
// head dims with and without SIMD tails, decode and paired prefill rows) and SwiGLU (float32) to
// 1e-5; rotation bit for bit (both float64).

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + 4 * x.length)));
const random = (rng: SeededRandom, n: number, std = 1) => Float32Array.from({ length: n }, () => rng.normal(std));

/** max |a − b| / (1 + |b|) */
function relDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return m;
}

/** This runtime's threads, claiming two cores: a pool of two even on a one-core machine. */
const twoCores = () => ({ ...threadSupport(), cores: 2 });

/** One arena holding everything (`arenaWeightBytes` is only a starting size here). */
const oneArena = { plan: [{ firstLayer: 0, endLayer: 1, weightBytes: 1 << 20 }] };

describe('WebAssembly SIMD kernels', () => {
  let wasm: WasmKernels;
  let threaded: WasmKernels;
  const ts = new TypeScriptKernels(1);
  beforeAll(async () => {
    wasm = new WasmKernels({ ...oneArena, threads: 1 });
    threaded = new WasmKernels({ ...oneArena, threads: 2, support: twoCores() });
    await Promise.all([wasm.ready(), threaded.ready()]);
  });
  afterAll(async () => {
    await wasm.dispose();
    await threaded.dispose();
  });
  /** Copies arrays into a kernel set's arena (all allocations first, then the copies: no view goes stale). */
  const put = (k: WasmKernels, ...arrays: Float32Array[]): KvBlock[] => {
    const blocks = arrays.map((a) => k.groups[0]!.storage.allocate(a.length));
    blocks.forEach((b, i) => b.view.set(arrays[i]!));
    return blocks;
  };
  /** Runs a matmul on `k` and returns y. */
  const matmul = async (k: WasmKernels, x: Float32Array, rows: number, lw: LinearWeights): Promise<Float32Array> => {
    const [bx, by] = put(k, x, new Float32Array(rows * lw.outDim));
    k.reserveScratch(0, 1);
    await k.matmul(bx!.view, rows, lw, by!.view);
    const y = by!.view.slice();
    bx!.free();
    by!.free();
    return y;
  };

  it('matmul: within float32 summation’s error bound of the float64 TypeScript kernel on the same weights, every dtype, batching and tail', async () => {
    const rng = new SeededRandom(1);
    for (const dtype of WEIGHT_DTYPES) {
      const k = new WasmKernels({ ...oneArena, threads: 1, weightDtype: dtype });
      await k.ready();
      for (const rows of [1, 2, 3, 4, 5, 7, 9, 67]) {
        for (const [inDim, outDim] of [[16, 24], [7, 13], [33, 8], [5, 3], [64, 37], [9, 17]] as const) {
          const x = random(rng, rows * inDim);
          const w = random(rng, outDim * inDim, 0.2);
          const bias = rows % 2 ? random(rng, outDim) : undefined;
          const label = `${dtype}, ${rows} rows, ${inDim} → ${outDim}${bias ? ' + bias' : ''}`;
          const got = await matmul(k, x, rows, k.linear(w, outDim, inDim, bias, 0, label));
          const rounded = roundWeights(dtype, w, outDim, inDim);
          const want = new Float32Array(rows * outDim);
          ts.matmul(x, rows, ts.linear(rounded, outDim, inDim, bias), want);
          for (let t = 0; t < rows; t++) {
            for (let o = 0; o < outDim; o++) {
              // Recursive float32 summation of k rounded products (int8: then × scale): |error| ≤ (k + 2)·2⁻²⁴·Σ|x·w| (+ the last rounding).
              let magnitude = 0;
              for (let j = 0; j < inDim; j++) magnitude += Math.abs(x[t * inDim + j]! * rounded[o * inDim + j]!);
              const bound = (inDim + 2) * 2 ** -24 * magnitude + 2 ** -23 * Math.abs(want[t * outDim + o]!);
              expect(Math.abs(got[t * outDim + o]! - want[t * outDim + o]!), `${label}, y[${t}][${o}]`).toBeLessThanOrEqual(bound);
            }
          }
        }
      }
      await k.dispose();
    }
  });

  it('matmul: a row gets the same bits alone, batched with others (every row count) and split over threads', async () => {
    const rng = new SeededRandom(7);
    for (const dtype of WEIGHT_DTYPES) {
      const one = new WasmKernels({ ...oneArena, threads: 1, weightDtype: dtype });
      const two = new WasmKernels({ ...oneArena, threads: 2, weightDtype: dtype, support: twoCores() });
      await Promise.all([one.ready(), two.ready()]);
      // Large enough that the threaded set splits it (at least 2^19 multiply-adds for 5 rows).
      const [inDim, outDim] = [301, 419];
      const w = random(rng, outDim * inDim, 0.1);
      const bias = random(rng, outDim);
      const x = random(rng, 9 * inDim);
      const a = one.linear(w, outDim, inDim, bias, 0, 'w');
      const b = two.linear(w, outDim, inDim, bias, 0, 'w');
      const alone = await Promise.all(Array.from({ length: 9 }, (_, t) => matmul(one, x.subarray(t * inDim, (t + 1) * inDim), 1, a)));
      for (const rows of [2, 3, 4, 5, 6, 7, 8, 9]) {
        for (const [label, k, lw] of [['1 thread', one, a], ['2 threads', two, b]] as const) {
          const y = await matmul(k, x.subarray(0, rows * inDim), rows, lw);
          for (let t = 0; t < rows; t++) expect(bits(y.subarray(t * outDim, (t + 1) * outDim)), `${dtype}, row ${t} of ${rows}, ${label}`).toEqual(bits(alone[t]!));
        }
      }
      expect(two.splitCalls, `${dtype}: the threaded set split its calls`).toBeGreaterThan(0);
      expect(one.splitCalls).toBe(0);
      await one.dispose();
      await two.dispose();
    }
  });

  it('attention: within 1e-5 of the TypeScript kernel (GQA, head dims 64, 12 and 6, decode and prefill rows), the same bits on 2 threads', async () => {
    const rng = new SeededRandom(2);
    for (const [numHeads, numKvHeads, headDim] of [[8, 8, 64], [6, 2, 12], [4, 1, 6], [3, 3, 36]] as const) {
      for (const [past, n] of [[0, 1], [0, 7], [37, 1], [129, 5], [3, 2], [700, 3]] as const) {
        const capacity = past + n + 3;
        const width = numHeads * headDim;
        const qRow = 2; // the row's queries start two rows into the stacked activations
        const q = random(rng, (qRow + n) * width);
        const keys = random(rng, numKvHeads * capacity * headDim);
        const values = random(rng, numKvHeads * capacity * headDim);
        const expected = new Float32Array((qRow + n) * width);
        ts.attention(q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, expected);
        const label = `${numHeads}/${numKvHeads} heads × ${headDim}, past ${past}, ${n} new`;
        const results: Float32Array[] = [];
        for (const k of [wasm, threaded]) {
          const [bq, bk, bv, bout] = put(k, q, keys, values, new Float32Array((qRow + n) * width));
          k.reserveScratch(0, past + n);
          await k.attention(bq!.view, qRow, n, past, bk!.view, bv!.view, capacity, numHeads, numKvHeads, headDim, bout!.view);
          expect(relDiff(bout!.view.subarray(qRow * width), expected.subarray(qRow * width)), label).toBeLessThanOrEqual(1e-5);
          expect(bout!.view.subarray(0, qRow * width).every((v) => v === 0), `${label}: rows before qRow untouched`).toBe(true);
          results.push(bout!.view.slice());
          for (const b of [bq, bk, bv, bout]) b!.free();
        }
        expect(bits(results[1]!), `${label}: threads`).toEqual(bits(results[0]!));
      }
    }
    expect(threaded.splitCalls).toBeGreaterThan(0);
  });

  it('swiglu and the residual add: within 1e-5 of the TypeScript kernels (odd sizes, large |gate|)', () => {
    const rng = new SeededRandom(3);
    for (const [rows, size] of [[1, 1536], [3, 13], [2, 4], [5, 1]] as const) {
      const gateUp = random(rng, rows * 2 * size, 4);
      gateUp[0] = -120; // exp(120) overflows float32: silu must still give ≈ 0
      const expected = new Float32Array(rows * size);
      ts.swiglu(gateUp, rows, size, expected);
      const [bg, bo] = put(wasm, gateUp, new Float32Array(rows * size));
      wasm.swiglu(bg!.view, rows, size, bo!.view);
      expect(relDiff(bo!.view, expected), `${rows} × ${size}`).toBeLessThanOrEqual(1e-5);
      const x = random(rng, rows * size);
      const y = random(rng, rows * size);
      const [bx, by] = put(wasm, x, y);
      wasm.addInPlace(bx!.view, by!.view, x.length);
      ts.addInPlace(x, y, x.length);
      expect(bits(bx!.view)).toEqual(bits(x));
      for (const b of [bg, bo, bx, by]) b!.free();
    }
  });

  it('rotateBlocks: the same bits as core’s TypeScript kernel, rotate-half and interleaved, odd pair counts, blocks in several memories', async () => {
    const rng = new SeededRandom(4);
    const regime = (invFreq: number[], m: number, id: string): RopeRegime => {
      const f = Float32Array.from(invFreq);
      return { kind: 'default', id, invFreq: f, invFreq64: Float64Array.from(invFreq), attentionFactor: Math.fround(m), attentionFactor64: m } as unknown as RopeRegime;
    };
    const apart = new WasmKernels({ plan: [0, 1, 2].map((l) => ({ firstLayer: l, endLayer: l + 1, weightBytes: 0 })), threads: 1 });
    await apart.ready();
    for (const [half, headDim] of [[32, 64], [5, 12], [7, 14], [2, 16]] as const) {
      const from = regime(Array.from({ length: half }, (_, i) => 10000 ** (-i / half)), 1, 'a');
      const to = regime(Array.from({ length: half }, (_, i) => 10000 ** (-i / half) / (1 + i)), 1.19, 'b');
      const count = 41;
      const positions = Int32Array.from({ length: count }, (_, k) => 3 * k + 1);
      const tables = rerotationTables(from, to, positions);
      const rows = Int32Array.from({ length: count }, (_, k) => k);
      for (const pairing of ['rotate-half', 'interleaved'] as const) {
        const data = random(rng, 3 * count * headDim);
        const [block] = put(wasm, data);
        const blocks = (d: Float32Array) => [0, 1, 2].map((h) => ({ data: d, offset: h * count * headDim }));
        const expected = data.slice();
        rotateBlocks(blocks(expected), count, headDim, pairing, tables, rows);
        wasm.rotateBlocks(blocks(block!.view), count, headDim, pairing, tables, rows);
        expect(bits(block!.view), `${pairing}, ${half} pairs of ${headDim}`).toEqual(bits(expected));
        block!.free();
        // Three heads, each in its own memory.
        const cache = apart.createCache({ numLayers: 3, numKvHeads: 1, headDim });
        cache.reserve(count);
        for (let l = 0; l < 3; l++) cache.keys(l).set(data.subarray(l * count * headDim, (l + 1) * count * headDim));
        apart.rotateBlocks([0, 1, 2].map((l) => ({ data: cache.keys(l), offset: 0 })), count, headDim, pairing, tables, rows);
        for (let l = 0; l < 3; l++) expect(bits(cache.keys(l).subarray(0, count * headDim)), `${pairing}: memory ${l}`).toEqual(bits(expected.subarray(l * count * headDim, (l + 1) * count * headDim)));
        cache.dispose();
      }
    }
    await apart.dispose();
  });

  it('refuses arrays outside its memory, weights it did not prepare, and bad thread counts', () => {
    const lw = ts.linear(new Float32Array(4), 2, 2);
    const [bx, by] = put(wasm, new Float32Array(2), new Float32Array(2));
    expect(() => wasm.matmul(bx!.view, 1, lw, by!.view)).toThrow(BackendError);
    expect(() => wasm.addInPlace(new Float32Array(4), new Float32Array(4), 4)).toThrow(BackendError);
    bx!.free();
    by!.free();
    for (const threads of [0, -1, 1.5, Number.NaN, Infinity]) {
      expect(() => new WasmKernels({ ...oneArena, threads }), String(threads)).toThrow(/threads must be a positive integer/);
    }
  });

  it('threads: more than the cores are clamped, and without shared memory one thread runs, each said in the description', async () => {
    const clamped = new WasmKernels({ ...oneArena, threads: 64, support: { cores: 2, unavailable: undefined, spawn: () => { throw new Error('not here'); } } });
    expect(clamped.threads).toBe(2);
    expect(clamped.description).toMatch(/64 threads asked, clamped to the 2 cores/);
    const single = new WasmKernels({ ...oneArena, threads: 4, support: { cores: 8, unavailable: 'SharedArrayBuffer is unavailable: the page is not cross-origin isolated', spawn: () => { throw new Error('not here'); } } });
    expect(single.threads).toBe(1);
    expect(single.description).toMatch(/1 thread, not 4: SharedArrayBuffer is unavailable/);
    await single.ready(); // an unshared memory and no worker
    expect(single.arenas[0]!.shared).toBe(false);
    await single.dispose();
    await clamped.dispose();
  });
});

describe('WasmArena', () => {
  it('re-derives block views after the memory grows, reuses freed bytes (as they were for blocks, zeroed for raw bytes), and coalesces', () => {
    const arena = new WasmArena();
    const a = arena.allocate(1000);
    a.view.fill(7);
    const before = a.view;
    const big = arena.allocate(4 * 65536); // forces growth: the old buffer is detached
    expect(before.length).toBe(0);
    expect(a.view.every((v) => v === 7)).toBe(true);
    expect(arena.owns(before.buffer)).toBe(true); // known, though detached (the kernels refuse it)
    big.view.fill(3);
    const top = arena.usedBytes;
    big.free();
    expect(arena.usedBytes).toBeLessThan(top); // the top came back
    a.free();
    expect(arena.usedBytes).toBe(0);
    // A block (cache or activation) gets the freed bytes as they were: its owner writes before reading.
    const b = arena.allocate(500);
    expect(b.offset).toBe(a.offset);
    expect(b.view.every((v) => v === 7)).toBe(true);
    b.free();
    // Raw bytes (weights, tables) are zeroed on the way back.
    const raw = arena.allocateBytes(2000);
    expect(raw).toBe(a.offset);
    expect(new Float32Array(arena.buffer, raw, 500).every((v) => v === 0)).toBe(true);
    arena.release(raw, 2000);
    const c = arena.allocate(10);
    const d = arena.allocate(10);
    c.free();
    const e = arena.allocate(10); // first fit: the hole c left
    expect(e.offset).toBe(c.offset);
    expect(d.offset).toBeGreaterThan(e.offset);
  });

  it('a shared arena keeps old views valid across growth and knows every buffer it had', () => {
    const arena = new WasmArena({ shared: true });
    const a = arena.allocate(100);
    const before = a.view;
    before.fill(5);
    arena.allocate(4 * 65536);
    expect(before.length).toBe(100);
    expect(before.buffer).not.toBe(a.view.buffer);
    expect(arena.owns(before.buffer) && arena.owns(a.view.buffer)).toBe(true);
    expect(a.view.every((v) => v === 5)).toBe(true);
    expect(arena.owns(new SharedArrayBuffer(8))).toBe(false);
  });

  it('refuses more than wasm32’s 4 GiB with a BackendError naming the ways out', () => {
    const arena = new WasmArena({ label: 'memory 2 of 3' });
    expect(() => arena.allocate(2 ** 30 + 1)).toThrow(/memory 2 of 3 would need .* over wasm32's 4 GiB: .*weights: 'int8'/);
  });

  it('holds a CpuKvCache: reserve past growth, clone, crop, replaceWith and dispose keep its contents', () => {
    const arena = new WasmArena();
    const layout = { numLayers: 2, numKvHeads: 2, headDim: 4 };
    const cache = new CpuKvCache(layout, 2, arena);
    cache.reserve(3);
    for (let l = 0; l < 2; l++) for (let h = 0; h < 2; h++) for (let i = 0; i < 3; i++) cache.keys(l).fill(l * 100 + h * 10 + i, cache.offset(h, i), cache.offset(h, i) + 4);
    cache.commit([1, 2, 3], [0, 1, 2], { id: 'r' } as unknown as RopeRegime);
    const copy = cache.clone();
    cache.reserve(5000); // grows the cache and the memory
    const other = new CpuKvCache(layout, 4, arena);
    for (const c of [cache, copy]) {
      for (let l = 0; l < 2; l++) for (let h = 0; h < 2; h++) for (let i = 0; i < 3; i++) expect(c.keys(l)[c.offset(h, i)]).toBe(l * 100 + h * 10 + i);
    }
    other.replaceWith(copy);
    expect(copy.disposed).toBe(true);
    expect(other.keys(1)[other.offset(1, 2)]).toBe(112);
    expect(other.kvStorage).toBe(arena);
    const used = arena.usedBytes;
    cache.dispose();
    other.dispose();
    expect(arena.usedBytes).toBeLessThan(used);
  });

  it('a cache whose storage refuses a grow is left as it was, and frees what it took', () => {
    const live = new Set<number>();
    let budget = 6; // 2 layers × keys and values at construction, then 2 of the 4 a grow needs
    let next = 0;
    const storage = {
      allocate: (length: number) => {
        if (budget-- <= 0) throw new BackendError('wasm-memory', 'full');
        const id = next++;
        live.add(id);
        return { view: new Float32Array(length), free: () => void live.delete(id) };
      },
    };
    const cache = new CpuKvCache({ numLayers: 2, numKvHeads: 1, headDim: 2 }, 2, storage);
    cache.reserve(1);
    cache.keys(1).set([5, 6]);
    cache.commit([1], [0], { id: 'r' } as unknown as RopeRegime);
    expect(() => cache.reserve(10)).toThrow(BackendError);
    expect(cache.capacity).toBe(2);
    expect(Array.from(cache.keys(1).subarray(0, 2))).toEqual([5, 6]);
    expect(live.size).toBe(4); // the two blocks of the failed grow were given back
  });

  it('a cache over several memories puts each layer in its group’s memory, also when it grows', async () => {
    const k = new WasmKernels({ plan: [{ firstLayer: 0, endLayer: 2, weightBytes: 0 }, { firstLayer: 2, endLayer: 3, weightBytes: 0 }], threads: 1 });
    const cache = k.createCache({ numLayers: 3, numKvHeads: 2, headDim: 4 });
    for (const extra of [0, 100]) {
      cache.reserve(extra);
      expect([0, 1, 2].map((l) => k.arenas.findIndex((a) => a.owns(cache.keys(l).buffer)))).toEqual([0, 0, 1]);
      expect([0, 1, 2].map((l) => k.arenas.findIndex((a) => a.owns(cache.values(l).buffer)))).toEqual([0, 0, 1]);
    }
    expect(k.accepts(cache)).toBe(true);
    expect(k.accepts(new CpuKvCache(cache.layout))).toBe(false);
    await k.dispose();
  });
});

