import { BackendError, CpuKvCache, SeededRandom, rerotationTables, rotateBlocks, type RopeRegime } from '@ropeswitch/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { TypeScriptKernels } from '../typescript-kernels.js';
import type { KvBlock } from '../decoder-kernels.js';
import { WasmArena } from './wasm-arena.js';
import { WasmKernels } from './wasm-kernels.js';

// The WebAssembly kernels against the TypeScript ones (the definition) on random inputs of odd
// sizes: matmul and rotation bit for bit (both sum in float64); attention (GQA, head dims with and
// without SIMD tails, decode and paired prefill rows) and SwiGLU (float32) to 1e-5.

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + 4 * x.length)));
const random = (rng: SeededRandom, n: number, std = 1) => Float32Array.from({ length: n }, () => rng.normal(std));

/** max |a − b| / (1 + |b|) */
function relDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return m;
}

describe('WebAssembly SIMD kernels', () => {
  let wasm: WasmKernels;
  const ts = new TypeScriptKernels();
  beforeAll(async () => {
    wasm = new WasmKernels();
    await wasm.ready();
  });
  /** Copies arrays into the arena (all allocations first, then the copies: no view goes stale). */
  const put = (...arrays: Float32Array[]): KvBlock[] => {
    const blocks = arrays.map((a) => wasm.storage.allocate(a.length));
    blocks.forEach((b, i) => b.view.set(arrays[i]!));
    return blocks;
  };

  it('matmul: the TypeScript kernel’s bits, whatever the batching (every micro-kernel and tail)', () => {
    const rng = new SeededRandom(1);
    for (const rows of [1, 2, 3, 4, 5, 7, 9, 67]) {
      for (const [inDim, outDim] of [[16, 24], [7, 13], [33, 8], [5, 3], [64, 37], [9, 17]] as const) {
        for (const withBias of [false, true]) {
          const x = random(rng, rows * inDim);
          const w = random(rng, outDim * inDim, 0.2);
          const bias = withBias ? random(rng, outDim) : undefined;
          const lw = wasm.linear(w, outDim, inDim, bias);
          const [bx, by] = put(x, new Float32Array(rows * outDim));
          wasm.matmul(bx!.view, rows, lw, by!.view);
          const label = `${rows} rows, ${inDim} → ${outDim}${withBias ? ' + bias' : ''}`;
          const expected = new Float32Array(rows * outDim);
          ts.matmul(x, rows, ts.linear(w, outDim, inDim, bias), expected);
          expect(bits(by!.view), label).toEqual(bits(expected));
          bx!.free();
          by!.free();
        }
      }
    }
  });

  it('attention: within 1e-5 of the TypeScript kernel (GQA, head dims 64, 12 and 6, decode and prefill rows)', () => {
    const rng = new SeededRandom(2);
    for (const [numHeads, numKvHeads, headDim] of [[8, 8, 64], [6, 2, 12], [4, 1, 6], [3, 3, 36]] as const) {
      for (const [past, n] of [[0, 1], [0, 7], [37, 1], [129, 5], [3, 2]] as const) {
        const capacity = past + n + 3;
        const width = numHeads * headDim;
        const qRow = 2; // the row's queries start two rows into the stacked activations
        const q = random(rng, (qRow + n) * width);
        const keys = random(rng, numKvHeads * capacity * headDim);
        const values = random(rng, numKvHeads * capacity * headDim);
        const expected = new Float32Array((qRow + n) * width);
        ts.attention(q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, expected);
        const [bq, bk, bv, bout, bscores] = put(q, keys, values, new Float32Array((qRow + n) * width), new Float32Array(2 * (past + n)));
        wasm.attention(bq!.view, qRow, n, past, bk!.view, bv!.view, capacity, numHeads, numKvHeads, headDim, bout!.view, bscores!.view);
        const label = `${numHeads}/${numKvHeads} heads × ${headDim}, past ${past}, ${n} new`;
        expect(relDiff(bout!.view.subarray(qRow * width), expected.subarray(qRow * width)), label).toBeLessThanOrEqual(1e-5);
        expect(bout!.view.subarray(0, qRow * width).every((v) => v === 0), `${label}: rows before qRow untouched`).toBe(true);
        for (const b of [bq, bk, bv, bout, bscores]) b!.free();
      }
    }
  });

  it('swiglu and the residual add: within 1e-5 of the TypeScript kernels (odd sizes, large |gate|)', () => {
    const rng = new SeededRandom(3);
    for (const [rows, size] of [[1, 1536], [3, 13], [2, 4], [5, 1]] as const) {
      const gateUp = random(rng, rows * 2 * size, 4);
      gateUp[0] = -120; // exp(120) overflows float32: silu must still give ≈ 0
      const expected = new Float32Array(rows * size);
      ts.swiglu(gateUp, rows, size, expected);
      const [bg, bo] = put(gateUp, new Float32Array(rows * size));
      wasm.swiglu(bg!.view, rows, size, bo!.view);
      expect(relDiff(bo!.view, expected), `${rows} × ${size}`).toBeLessThanOrEqual(1e-5);
      const x = random(rng, rows * size);
      const y = random(rng, rows * size);
      const [bx, by] = put(x, y);
      wasm.addInPlace(bx!.view, by!.view);
      ts.addInPlace(x, y);
      expect(bits(bx!.view)).toEqual(bits(x));
      for (const b of [bg, bo, bx, by]) b!.free();
    }
  });

  it('rotateBlocks: the same bits as core’s TypeScript kernel, rotate-half and interleaved, odd pair counts', () => {
    const rng = new SeededRandom(4);
    const regime = (invFreq: number[], m: number, id: string): RopeRegime => {
      const f = Float32Array.from(invFreq);
      return { kind: 'default', id, invFreq: f, invFreq64: Float64Array.from(invFreq), attentionFactor: Math.fround(m), attentionFactor64: m } as unknown as RopeRegime;
    };
    for (const [half, headDim] of [[32, 64], [5, 12], [7, 14], [2, 16]] as const) {
      const from = regime(Array.from({ length: half }, (_, i) => 10000 ** (-i / half)), 1, 'a');
      const to = regime(Array.from({ length: half }, (_, i) => 10000 ** (-i / half) / (1 + i)), 1.19, 'b');
      const count = 41;
      const positions = Int32Array.from({ length: count }, (_, k) => 3 * k + 1);
      const tables = rerotationTables(from, to, positions);
      const rows = Int32Array.from({ length: count }, (_, k) => k);
      for (const pairing of ['rotate-half', 'interleaved'] as const) {
        const data = random(rng, 3 * count * headDim);
        const [block] = put(data);
        const blocks = (d: Float32Array) => [0, 1, 2].map((h) => ({ data: d, offset: h * count * headDim }));
        rotateBlocks(blocks(data), count, headDim, pairing, tables, rows);
        wasm.rotateBlocks(blocks(block!.view), count, headDim, pairing, tables, rows);
        expect(bits(block!.view), `${pairing}, ${half} pairs of ${headDim}`).toEqual(bits(data));
        block!.free();
      }
    }
  });

  it('refuses arrays outside its memory and weights it did not prepare', () => {
    const lw = ts.linear(new Float32Array(4), 2, 2);
    const [bx, by] = put(new Float32Array(2), new Float32Array(2));
    expect(() => wasm.matmul(bx!.view, 1, lw, by!.view)).toThrow(BackendError);
    expect(() => wasm.addInPlace(new Float32Array(4), new Float32Array(4))).toThrow(BackendError);
    bx!.free();
    by!.free();
  });
});

describe('WasmArena', () => {
  it('re-derives block views after the memory grows, reuses freed bytes zeroed, and coalesces', () => {
    const arena = new WasmArena();
    const a = arena.allocate(1000);
    a.view.fill(7);
    const before = a.view;
    const big = arena.allocate(4 * 65536); // forces growth: the old buffer is detached
    expect(before.length).toBe(0);
    expect(a.view.every((v) => v === 7)).toBe(true);
    big.view.fill(3);
    const top = arena.usedBytes;
    big.free();
    expect(arena.usedBytes).toBeLessThan(top); // the top came back
    a.free();
    expect(arena.usedBytes).toBe(0);
    const b = arena.allocate(500);
    expect(b.view.every((v) => v === 0)).toBe(true);
    const c = arena.allocate(10);
    const d = arena.allocate(10);
    c.free();
    const e = arena.allocate(10); // first fit: the hole c left
    expect(e.offset).toBe(c.offset);
    expect(d.offset).toBeGreaterThan(e.offset);
  });

  it('refuses more than wasm32’s 4 GiB with a BackendError naming the way out', () => {
    const arena = new WasmArena();
    expect(() => arena.allocate(2 ** 30 + 1)).toThrow(/kernels: 'typescript'/);
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
});
