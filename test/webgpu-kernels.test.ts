import { requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import { rotateBlocks, rotaryTables, makeRegime } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention } from '../packages/backends/reference/src/kernels/attention.js';
import { matmul } from '../packages/backends/reference/src/kernels/matmul.js';
import { rmsNorm } from '../packages/backends/reference/src/kernels/rms-norm.js';
import { swiglu } from '../packages/backends/reference/src/kernels/swiglu.js';
import { CommandRecorder } from '../packages/backends/webgpu/src/command-recorder.js';
import { DeviceKernels } from '../packages/backends/webgpu/src/device-kernels.js';
import { BufferUsage, MapMode, STORAGE_USAGE } from '../packages/backends/webgpu/src/gpu-flags.js';
import type { DeviceMatrix } from '../packages/backends/webgpu/src/device-matrix.js';
import type { KvHeadBlock } from '../packages/backends/webgpu/src/gpu-kv-cache.js';
import type { KernelSetName } from '../packages/backends/webgpu/src/kernel-set.js';
import { type Pipelines, createPipelines } from '../packages/backends/webgpu/src/pipelines.js';
import { ATTENTION_CASES, type AttentionCase, attentionOperands, describeAttentionCase } from './support/attention-cases.js';

// Each WGSL kernel against the reference backend's TypeScript kernel, on the software adapter.
// The device sums in float32 and the reference in float64: results agree to float32 rounding.

let device: GPUDevice;
let pipelines: Pipelines;
let empty: GPUBuffer;

beforeAll(async () => {
  ({ device } = await requestNodeGpuDevice({ adapter: 'software' }));
  pipelines = await createPipelines(device);
  empty = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
});
afterAll(() => device?.destroy());

const kernels = (set: KernelSetName = 'register-blocked') => new DeviceKernels(device, pipelines, set, empty);

function upload(data: Float32Array | Uint32Array): GPUBuffer {
  const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: STORAGE_USAGE, mappedAtCreation: true });
  if (data instanceof Float32Array) new Float32Array(b.getMappedRange()).set(data);
  else new Uint32Array(b.getMappedRange()).set(data);
  b.unmap();
  return b;
}

async function run(record: (rec: CommandRecorder) => void, out: GPUBuffer, length: number): Promise<Float32Array> {
  const rec = new CommandRecorder(device);
  record(rec);
  const staging = device.createBuffer({ size: length * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  rec.copy(out, 0, staging, 0, length * 4);
  const { commands, uniforms } = rec.finish();
  device.queue.submit([commands]);
  await staging.mapAsync(MapMode.READ);
  const result = new Float32Array(staging.getMappedRange().slice(0));
  staging.destroy();
  uniforms?.destroy();
  return result;
}

/** Largest |a − b| / (1 + |b|). */
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!)));
  return m;
}

const wave = (n: number, f: number, phase = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * f + phase));

/** A cache layer in one block (every KV head). */
const wholeLayer = (buffer: GPUBuffer, heads: number): KvHeadBlock[] => [{ buffer, firstHead: 0, heads }];

/** `[rows][width]` data as a matrix cut into row blocks of `sizes` rows (each its own buffer). */
function blockMatrix(data: Float32Array, width: number, sizes: readonly number[]): DeviceMatrix {
  let first = 0;
  const blocks = sizes.map((rows) => {
    const block = { buffer: upload(data.slice(first * width, (first + rows) * width)), first, rows };
    first += rows;
    return block;
  });
  return { blocks, inDim: width, outDim: first };
}

/** A `[kvHead][capacity][headDim]` layer cut into blocks of `sizes` heads. */
function blockLayer(data: Float32Array, perHead: number, sizes: readonly number[]): KvHeadBlock[] {
  let firstHead = 0;
  return sizes.map((heads) => {
    const block = { buffer: upload(data.slice(firstHead * perHead, (firstHead + heads) * perHead)), firstHead, heads };
    firstHead += heads;
    return block;
  });
}

describe('WGSL matmul', () => {
  // Rows: decode (1), a shadow chunk beside a decode row (3), leftovers past 4-row and 32-row
  // blocks; output sizes off the 4-wide blocks; inDim 7 sends the register-blocked set to the tiled
  // fallback (not a multiple of 4).
  const shapes = [[16, 24], [7, 13], [64, 40], [36, 5], [100, 33]] as const;
  for (const set of ['register-blocked', 'tiled'] as const) {
    for (const rows of [1, 3, 5, 33]) {
      it(`${set}: ${rows} rows equal the reference matmul, with and without bias`, async () => {
        for (const [inDim, outDim] of shapes) {
          for (const withBias of [false, true]) {
            const x = wave(rows * inDim, 1.7, rows);
            const w = wave(inDim * outDim, 0.3, inDim);
            const bias = withBias ? Float32Array.from({ length: outDim }, (_, i) => i / 7 - 1) : undefined;
            const want = new Float32Array(rows * outDim);
            matmul(x, rows, inDim, w, outDim, want, bias);
            const y = device.createBuffer({ size: Math.ceil(rows * outDim / 4) * 16, usage: STORAGE_USAGE });
            const matrix = { blocks: [{ buffer: upload(w), first: 0, rows: outDim }], inDim, outDim };
            const got = await run((rec) => kernels(set).matmul(rec, upload(x), rows, matrix, y, bias && upload(bias)), y, rows * outDim);
            expect(relErr(got, want), `${inDim} → ${outDim}${withBias ? ' + bias' : ''}`).toBeLessThan(2e-6);
          }
        }
      });
    }
  }
});

describe('WGSL RMSNorm, SwiGLU, residual add', () => {
  it('RMSNorm equals the reference per row (dims below, at and above the 64-wide workgroup)', async () => {
    for (const dim of [5, 64, 200]) {
      const rows = 3;
      const x = wave(rows * dim, 0.9, dim);
      const weight = wave(dim, 0.2, 1);
      const want = new Float32Array(rows * dim);
      rmsNorm(x, rows, dim, weight, 1e-5, want);
      const out = device.createBuffer({ size: Math.ceil(rows * dim / 4) * 16, usage: STORAGE_USAGE });
      const got = await run((rec) => kernels().rmsNorm(rec, upload(x), upload(weight), out, rows, dim, 1e-5), out, rows * dim);
      expect(relErr(got, want), `dim ${dim}`).toBeLessThan(1e-6);
    }
  });

  it('SwiGLU equals the reference, large |gate| included', async () => {
    const rows = 2;
    const size = 70;
    const gateUp = Float32Array.from({ length: rows * 2 * size }, (_, i) => Math.sin(i * 0.7) * (i % 9 === 0 ? 120 : 4));
    const want = new Float32Array(rows * size);
    swiglu(gateUp, rows, size, want);
    const act = device.createBuffer({ size: rows * size * 4, usage: STORAGE_USAGE });
    const got = await run((rec) => kernels().swiglu(rec, upload(gateUp), act, rows, size), act, rows * size);
    expect(relErr(got, want)).toBeLessThan(1e-6);
  });

  it('the residual add adds in place', async () => {
    const x = wave(130, 0.5);
    const y = wave(130, 0.8, 2);
    const xb = upload(x);
    const got = await run((rec) => kernels().add(rec, xb, upload(y), 130), xb, 130);
    expect(Array.from(got)).toEqual(Array.from(x, (v, i) => Math.fround(v + y[i]!)));
  });
});

describe('WGSL rotary', () => {
  // Full and partial rotary (half 8 of head dim 16, and 3 of 10), both pairings.
  // register-blocked turns a whole vector per invocation, tiled one pair.
  for (const set of ['register-blocked', 'tiled'] as const) {
    for (const pairing of ['rotate-half', 'interleaved'] as const) {
      for (const [headDim, half] of [[16, 8], [10, 3]] as const) {
        it(`${set}, ${pairing}, head dim ${headDim}, ${half} pairs: q and k heads of each token turn like rotateBlocks`, async () => {
          const tokens = 5;
          const numHeads = 3;
          const numKv = 1;
          const qkvDim = (numHeads + 2 * numKv) * headDim;
          const inv = Float32Array.from({ length: half }, (_, i) => Math.fround(10000 ** (-i / half)));
          const regime = makeRegime('test', 'static', inv, Float64Array.from(inv), 1.19);
          const positions = [0, 7, 300, 4095, 4096];
          const tables = rotaryTables(regime, positions);
          const qkv = wave(tokens * qkvDim, 0.37);
          const want = qkv.slice();
          const heads = Array.from({ length: numHeads + numKv }, (_, h) => ({ data: want, offset: h * headDim }));
          rotateBlocks(heads, tokens, qkvDim, pairing, tables, Int32Array.from({ length: tokens }, (_, t) => t));
          const buf = upload(qkv);
          const got = await run((rec) => kernels(set).rotaryHeads(rec, buf, upload(tables.cos), upload(tables.sin), tokens, numHeads + numKv, headDim, half, qkvDim, pairing === 'interleaved'), buf, tokens * qkvDim);
          expect(relErr(got, want)).toBeLessThan(1e-6);
          // v heads are left alone (the dims past the rotary ones are compared above).
          for (let t = 0; t < tokens; t++) {
            for (let d = (numHeads + numKv) * headDim; d < qkvDim; d++) expect(got[t * qkvDim + d]).toBe(qkv[t * qkvDim + d]);
          }
        });
      }
    }
  }
});

describe('WGSL attention', () => {
  // The reference kernel's cases, and the largest head_dim the WGSL kernels take (MAX_ATTENTION_HEAD_DIM).
  const cases: readonly AttentionCase[] = [...ATTENTION_CASES, [4, 300, 256, 2, 1]];
  // register-blocked runs the per-query kernel where head_dim is a multiple of 4 (the workgroup one
  // otherwise); tiled always runs the workgroup kernel.
  for (const set of ['register-blocked', 'tiled'] as const) {
    for (const c of cases) {
      it(`${set}: equals the reference (${describeAttentionCase(c)})`, async () => {
        const operands = attentionOperands(c);
        const [q, start, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, want] = operands;
        attention(...operands, new Float64Array(4 * (past + n)));
        const width = numHeads * headDim;
        const rows = q.length / width;
        const out = device.createBuffer({ size: rows * width * 4, usage: STORAGE_USAGE });
        const got = await run(
          (rec) => kernels(set).attention(rec, upload(q), wholeLayer(upload(keys), numKvHeads), wholeLayer(upload(values), numKvHeads), out, { n, start, past, capacity, numHeads, numKvHeads, headDim, qStride: width }),
          out,
          rows * width,
        );
        expect(relErr(got.subarray(start * width, (start + n) * width), want.subarray(start * width, (start + n) * width))).toBeLessThan(2e-6);
      });
    }
  }
});

describe('kernels over weights and cache layers cut into blocks (each its own buffer, as past one storage binding)', () => {
  // A split must not change a single bit: each output is the same sum whichever block holds its row.
  for (const set of ['register-blocked', 'tiled'] as const) {
    it(`${set}: a matmul over row blocks (with bias) equals the one-block matmul bit for bit`, async () => {
      for (const [rows, inDim, outDim, sizes] of [[1, 16, 70, [32, 32, 6]], [5, 12, 40, [8, 32]], [33, 7, 13, [5, 8]]] as const) {
        const x = upload(wave(rows * inDim, 1.3, rows));
        const w = wave(inDim * outDim, 0.7, inDim);
        const bias = upload(Float32Array.from({ length: outDim }, (_, i) => i / 5 - 2));
        const y = () => device.createBuffer({ size: Math.ceil((rows * outDim) / 4) * 16, usage: STORAGE_USAGE });
        const whole = y();
        const split = y();
        const a = await run((rec) => kernels(set).matmul(rec, x, rows, blockMatrix(w, inDim, [outDim]), whole, bias), whole, rows * outDim);
        const b = await run((rec) => kernels(set).matmul(rec, x, rows, blockMatrix(w, inDim, sizes), split, bias), split, rows * outDim);
        expect(relErr(a, b), `${rows}×${inDim} → ${outDim} in ${sizes.join('+')}`).toBe(0);
        const want = new Float32Array(rows * outDim);
        matmul(wave(rows * inDim, 1.3, rows), rows, inDim, w, outDim, want, Float32Array.from({ length: outDim }, (_, i) => i / 5 - 2));
        expect(relErr(b, want)).toBeLessThan(2e-6);
      }
    });
  }

  it('the embedding gather over row blocks writes each token once, from the block holding its id', async () => {
    const vocab = 37;
    const hidden = 8;
    const table = wave(vocab * hidden, 0.41);
    const ids = Uint32Array.from([0, 36, 5, 12, 13, 12, 30]);
    const x = device.createBuffer({ size: ids.length * hidden * 4, usage: STORAGE_USAGE });
    const got = await run((rec) => kernels().embed(rec, upload(ids), blockMatrix(table, hidden, [13, 13, 11]), x, ids.length), x, ids.length * hidden);
    const want = new Float32Array(ids.length * hidden);
    ids.forEach((id, t) => want.set(table.subarray(id * hidden, (id + 1) * hidden), t * hidden));
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  for (const set of ['register-blocked', 'tiled'] as const) {
    it(`${set}: attention and the cache write over a layer cut into head blocks equal the one-block run bit for bit (GQA 6/3)`, async () => {
      const [numHeads, numKvHeads, headDim, n, past, capacity] = [6, 3, 8, 3, 5, 12];
      const qkvDim = (numHeads + 2 * numKvHeads) * headDim;
      const qkv = upload(wave(n * qkvDim, 0.53));
      const perHead = capacity * headDim;
      const cacheData = wave(numKvHeads * perHead, 0.29, 1);
      const results: Float32Array[] = [];
      const layers: Float32Array[] = [];
      for (const sizes of [[3], [1, 2], [1, 1, 1]]) {
        const keys = blockLayer(cacheData, perHead, sizes);
        const values = blockLayer(cacheData.map((v) => -v), perHead, sizes);
        const out = device.createBuffer({ size: n * numHeads * headDim * 4, usage: STORAGE_USAGE });
        const shape = { n, start: 0, past, capacity };
        results.push(
          await run(
            (rec) => {
              kernels(set).kvWrite(rec, qkv, keys, values, { ...shape, numKvHeads, headDim, qkvDim, qDim: numHeads * headDim });
              kernels(set).attention(rec, qkv, keys, values, out, { ...shape, numHeads, numKvHeads, headDim, qStride: qkvDim });
            },
            out,
            n * numHeads * headDim,
          ),
        );
        // The keys written, head by head, whatever block holds them.
        const layer = new Float32Array(numKvHeads * perHead);
        for (const block of keys) layer.set(await run(() => undefined, block.buffer, block.heads * perHead), block.firstHead * perHead);
        layers.push(layer);
      }
      expect(results[0]!.some((v) => v !== 0)).toBe(true);
      for (const i of [1, 2]) {
        expect(Array.from(results[i]!), `attention, split ${i}`).toEqual(Array.from(results[0]!));
        expect(Array.from(layers[i]!), `written keys, split ${i}`).toEqual(Array.from(layers[0]!));
      }
    });
  }
});
