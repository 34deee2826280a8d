// The reference backend's worker threads, weight dtypes and memory groups, model by model: results
// do not depend on the thread count or on how layers are spread over WebAssembly memories; every
// weight dtype computes what the TypeScript kernels compute on the same rounded weights (bfloat16
// of a bf16 checkpoint: float32's bits); a worker that dies fails the forward with a BackendError
// and leaves the caches as they were, and the next forward runs on a fresh pool; a backend never
// keeps a process alive; each layer is converted as it is read.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ReferenceBackend, type ReferenceBackendOptions } from '@ropeswitch/backend-reference';
import { BackendError, type KvCache, SeededRandom, type WeightStore, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTinyModel } from '../packages/cli/src/index.js';
import type { WasmKernels } from '../packages/backends/reference/src/kernels/wasm/wasm-kernels.js';
import { snapshotByLayer } from '@ropeswitch/testkit';
import { maxAbsDiff } from './support/fixtures.js';

const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer.slice(x.byteOffset, x.byteOffset + 4 * x.length)));

let root: string;
/** Wide enough that its matrices are split between threads (hidden 256, 4 layers, GQA 8/4). */
let mid: string;
/** The same shape, stored in bf16. */
let midBf16: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ropeswitch-threads-'));
  mid = join(root, 'mid');
  midBf16 = join(root, 'mid-bf16');
  const shape = { seed: 5, hidden: 256, layers: 4, heads: 8, kvHeads: 4, intermediate: 704, vocab: 515, originalMax: 64, maxPositions: 2048 };
  await makeTinyModel(mid, shape);
  await makeTinyModel(midBf16, { ...shape, dtype: 'bf16' });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function open(dir: string, options: ReferenceBackendOptions = {}): Promise<ReferenceBackend> {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return new ReferenceBackend(config, weights, options);
  } finally {
    await weights.close();
  }
}

const kernelsOf = (b: ReferenceBackend) => (b as unknown as { ops: WasmKernels }).ops;

/** A prompt, then a batch of a decode row beside a 3-token chunk of a second sequence, then decode steps: every logit and both caches. */
async function run(b: ReferenceBackend, seed = 1): Promise<{ logits: Float32Array[]; caches: KvCache[] }> {
  const schedule = createRopeSchedule(b.config.rope);
  const rng = new SeededRandom(seed);
  const ids = (n: number) => Array.from({ length: n }, () => rng.int(b.config.vocabSize));
  const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const a = b.createCache();
  const s = b.createCache();
  const logits: Float32Array[] = [];
  const row = (cache: KvCache, tokens: number[], logitCount = 1) => ({ tokens, positions: range(cache.length, tokens.length), cache, regime: schedule.regimeFor(cache.length + tokens.length), logits: logitCount });
  logits.push(...(await b.forward({ rows: [row(a, ids(40), 40)] })).rows.map((r) => r.data));
  logits.push(...(await b.forward({ rows: [row(a, ids(1)), row(s, ids(3), 0)] })).rows.map((r) => r.data));
  for (let i = 0; i < 4; i++) logits.push(...(await b.forward({ rows: [row(a, ids(1)), row(s, ids(2))] })).rows.map((r) => r.data));
  return { logits, caches: [a, s] };
}

describe('reference backend: threads, weight dtypes and memory groups', () => {
  it('2 threads and 4 memories give the bits of 1 thread and 1 memory, logits and caches (and split their work)', async () => {
    const one = await open(mid, { threads: 1 });
    const want = await run(one);
    for (const options of [{ threads: 2 }, { threads: 1, arenaWeightBytes: 1 }, { threads: 2, arenaWeightBytes: 1 }] as const) {
      const b = await open(mid, options);
      const got = await run(b);
      const label = JSON.stringify(options);
      got.logits.forEach((l, i) => expect(bits(l), `${label}: logits ${i}`).toEqual(bits(want.logits[i]!)));
      got.caches.forEach((c, i) => expect(snapshotByLayer(c), `${label}: cache ${i}`).toEqual(snapshotByLayer(want.caches[i]!)));
      const k = kernelsOf(b);
      if (options.threads === 2) expect(k.splitCalls, label).toBeGreaterThan(0);
      if (options.arenaWeightBytes) expect(k.arenas.length, label).toBe(5); // a memory per layer, the LM head in its own
      expect(b.deviceDescription, label).toMatch(new RegExp(`${options.threads} threads?`));
      await b.dispose();
    }
    await one.dispose();
  });

  // float32 sums against float64 ones: up to 2.8e-5 of the largest logit on this model (every dtype alike).
  it('every weight dtype: the WebAssembly kernels within 1e-4 (relative) of the TypeScript ones on the same rounded weights', async () => {
    for (const weights of ['float32', 'bfloat16', 'float16', 'int8'] as const) {
      const wasm = await open(mid, { weights, threads: 2 });
      const ts = await open(mid, { weights, kernels: 'typescript' });
      const [a, b] = [await run(wasm), await run(ts)];
      a.logits.forEach((l, i) => {
        const scale = Math.max(1, ...Array.from(b.logits[i]!, Math.abs));
        expect(maxAbsDiff(l, b.logits[i]!) / scale, `${weights}: logits ${i}`).toBeLessThanOrEqual(1e-4);
      });
      expect(wasm.weightDtype).toBe(weights);
      expect(wasm.deviceDescription).toContain(`${weights} weights`);
      await wasm.dispose();
      await ts.dispose();
    }
  });

  it('bfloat16 weights of a bf16 checkpoint are lossless: the bits of float32 weights, in half the memory', async () => {
    const f32 = await open(midBf16, { threads: 1 });
    const bf16 = await open(midBf16, { threads: 1, weights: 'bfloat16' });
    const [a, b] = [await run(f32), await run(bf16)];
    b.logits.forEach((l, i) => expect(bits(l), `logits ${i}`).toEqual(bits(a.logits[i]!)));
    const bytes = (x: ReferenceBackend) => kernelsOf(x).arenas.reduce((n, m) => n + m.usedBytes, 0);
    expect(bytes(bf16)).toBeLessThan(0.6 * bytes(f32));
    await f32.dispose();
    await bf16.dispose();
  });

  it('float16 refuses a weight past ±65504 with a typed error naming the tensor', async () => {
    const { config, weights } = await loadCheckpoint(mid);
    const big: WeightStore = {
      ...weights,
      get: (name, shape) => {
        const t = weights.get(name, shape);
        if (name === 'model.layers.1.mlp.down_proj.weight') t[3] = 7e4;
        return t;
      },
    };
    let caught: unknown;
    try {
      new ReferenceBackend(config, big, { weights: 'float16' });
    } catch (e) {
      caught = e;
    }
    await weights.close();
    expect(caught).toBeInstanceOf(BackendError);
    expect((caught as BackendError).code).toBe('weights-range');
    expect(String(caught)).toMatch(/model\.layers\.1\.mlp\.down_proj/);
  });

  it('bad threads and weights options are typed errors', async () => {
    for (const threads of [0, -2, 2.5, Number.NaN]) {
      await expect(open(mid, { threads }), String(threads)).rejects.toMatchObject({ code: 'bad-option' });
    }
    await expect(open(mid, { weights: 'int4' as never })).rejects.toMatchObject({ code: 'bad-option' });
    await expect(open(mid, { arenaWeightBytes: 0 })).rejects.toMatchObject({ code: 'bad-option' });
    const clamped = await open(mid, { threads: 4096 });
    expect(clamped.deviceDescription).toMatch(/4096 threads asked, clamped to the \d+ cores/);
    await clamped.dispose();
  });

  it('a worker that dies: the forward fails with BackendError leaving the caches as they were, or is exact; the next starts a fresh pool', async () => {
    const b = await open(mid, { threads: 2 });
    const fresh = await open(mid, { threads: 1 });
    const schedule = createRopeSchedule(b.config.rope);
    const tokens = Array.from({ length: 48 }, (_, i) => (i * 37) % b.config.vocabSize);
    const row = (cache: KvCache, ids: number[]) => ({ tokens: ids, positions: ids.map((_, i) => cache.length + i), cache, regime: schedule.regimeFor(cache.length + ids.length) });
    const other = fresh.createCache();
    await fresh.forward({ rows: [row(other, tokens.slice(0, 8))] });
    const want = await fresh.forward({ rows: [row(other, tokens.slice(8))] });
    const cache = b.createCache();
    await b.forward({ rows: [row(cache, tokens.slice(0, 8))] }); // the pool is up
    const before = snapshotByLayer(cache);
    const k = kernelsOf(b) as unknown as { pool: { workers: { terminate(): Promise<void> }[] } };
    const pool = k.pool;
    const dying = pool.workers[0]!.terminate(); // dies while the next forward's chunks run, or just before
    const outcome = await b.forward({ rows: [row(cache, tokens.slice(8))] }).then(
      (r) => r,
      (e: unknown) => e,
    );
    if (outcome instanceof Error) {
      // It died holding a chunk: a typed error, nothing written into the cache.
      expect(outcome).toBeInstanceOf(BackendError);
      expect((outcome as BackendError).code).toBe('worker-died');
      expect(snapshotByLayer(cache)).toEqual(before);
    } else {
      // It died idle: the other threads took its chunks.
      expect(bits((outcome as { rows: { data: Float32Array }[] }).rows[0]!.data)).toEqual(bits(want.rows[0]!.data));
      cache.crop(8);
    }
    await dying;
    // Either way the next forward runs on a new pool, to the bits of a backend that never lost a worker.
    const again = await b.forward({ rows: [row(cache, tokens.slice(8))] });
    expect(k.pool).not.toBe(pool);
    expect(bits(again.rows[0]!.data)).toEqual(bits(want.rows[0]!.data));
    await b.dispose();
    await fresh.dispose();
    await expect(b.forward({ rows: [row(b.createCache(), [1])] })).rejects.toMatchObject({ code: 'disposed' });
  });

  it('never keeps a process alive: a script that forwards on 2 threads and never disposes exits by itself', async () => {
    const script = join(root, 'no-dispose.mts');
    const src = (p: string) => fileURLToPath(new URL(`../packages/${p}`, import.meta.url));
    await writeFile(
      script,
      `import { ReferenceBackend } from ${JSON.stringify(src('backends/reference/src/index.ts'))};
import { loadCheckpoint, createRopeSchedule } from ${JSON.stringify(src('core/src/index.ts'))};
const { config, weights } = await loadCheckpoint(${JSON.stringify(mid)});
const b = new ReferenceBackend(config, weights, { threads: 2 });
await weights.close();
const cache = b.createCache();
const ids = Array.from({ length: 32 }, (_, i) => i);
await b.forward({ rows: [{ tokens: ids, positions: ids, cache, regime: createRopeSchedule(config.rope).regimeFor(32) }] });
console.log('threads', b.threads);
`,
    );
    const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));
    const t0 = performance.now();
    const { stdout } = await promisify(execFile)(tsx, [script], { timeout: 30_000 });
    expect(stdout.trim()).toBe('threads 2');
    expect(performance.now() - t0).toBeLessThan(20_000);
  });

  it('converts each layer as it is read: its matrices can be overwritten once the next layer is read, and no logit changes', async () => {
    const { config, weights } = await loadCheckpoint(mid);
    const matrices = /^model\.layers\.(\d+)\.(self_attn\.(qkv|o)_proj|mlp\.(gate_up|down)_proj)\.weight$/;
    const read = new Map<number, Float32Array[]>();
    const poisoning: WeightStore = {
      ...weights,
      get: (name, shape) => {
        const t = weights.get(name, shape);
        const layer = /^model\.layers\.(\d+)\./.exec(name);
        if (layer) {
          const l = Number(layer[1]);
          // The first tensor of layer l: everything read for layer l − 1 must be converted by now.
          for (const m of read.get(l - 1) ?? []) m.fill(Number.NaN);
          read.delete(l - 1);
          if (matrices.test(name)) read.set(l, [...(read.get(l) ?? []), t]);
        }
        return t;
      },
    };
    const streamed = new ReferenceBackend(config, poisoning, { threads: 1 });
    await weights.close();
    const normal = await open(mid, { threads: 1 });
    const [a, b] = [await run(streamed), await run(normal)];
    a.logits.forEach((l, i) => expect(bits(l), `logits ${i}`).toEqual(bits(b.logits[i]!)));
    await streamed.dispose();
    await normal.dispose();
  });
});
