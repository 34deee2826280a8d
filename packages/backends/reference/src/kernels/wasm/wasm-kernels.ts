import { BackendError, CpuKvCache, type KvCacheLayout, rotateBlocks } from '@ropeswitch/core';
import { KernelPool, type ThreadPart } from '../../threads/kernel-pool.js';
import { MAX_CHUNKS, type PoolKernel } from '../../threads/pool-worker-source.js';
import { type ThreadSupport, threadSupport } from '../../threads/thread-support.js';
import type { AttentionOperands } from '../attention.js';
import type { DecoderKernels, KernelCompletion, KernelGroup, KvStorage, LinearWeights } from '../decoder-kernels.js';
import { WEIGHT_DTYPE_CODE, type WeightDtype, int8Scales, panelBytes, writePanels } from '../weight-dtype.js';
import type { ArenaGroup } from './arena-plan.js';
import { type KernelBuild, kernelBuild } from './kernel-build.js';
import { type ArenaBlock, WasmArena } from './wasm-arena.js';
import { webAssembly } from './webassembly-api.js';

/** The functions `assembly/index.ts` exports; every pointer is a byte offset into the instance's memory. */
interface KernelExports {
  linear(
    dtype: number, x: number, rows: number, inDim: number, w: number, outDim: number, y: number, bias: number, scales: number,
    p0: number, p1: number, scratch: number,
  ): void;
  attention(
    q: number, n: number, past: number, keys: number, values: number, capacity: number,
    numHeads: number, numKvHeads: number, headDim: number, out: number, h0: number, h1: number, scores: number,
  ): void;
  swiglu(gateUp: number, rows: number, size: number, out: number): void;
  addInPlace(x: number, y: number, n: number): void;
  rotate(x: number, count: number, stride: number, half: number, interleaved: number, cos: number, sin: number, rows: number): void;
}

/**
 * Multiply-adds below which a kernel call runs on the calling thread alone: waking the workers
 * costs microseconds, which a small model's matrices (the `builtin` bench model's are 64 wide) do
 * not repay.
 */
const PARALLEL_MIN_MACS = 1 << 20;

/** A weight matrix in an arena: panels (`assembly/panels.ts`) of its dtype, optional bias, int8 row scales. */
class ArenaLinear implements LinearWeights {
  constructor(
    readonly arena: number,
    readonly dtype: number,
    readonly weights: number,
    readonly bias: number,
    readonly scales: number,
    readonly outDim: number,
    readonly inDim: number,
  ) {}
}

/** Cache storage that puts each layer's blocks in the arena of that layer's group. */
class LayeredStorage implements KvStorage {
  constructor(
    private readonly arenas: readonly WasmArena[],
    private readonly arenaOfLayer: readonly number[],
  ) {}

  allocate(length: number, layer = 0): ArenaBlock {
    return this.arenas[this.arenaOfLayer[layer] ?? 0]!.allocate(length);
  }
}

/** Options of {@link WasmKernels}. */
export interface WasmKernelOptions {
  /** Memories by group of layers (from `planArenas`); the LM head goes in the last. */
  readonly plan: readonly ArenaGroup[];
  readonly weightDtype?: WeightDtype;
  /** Threads asked for (default: the runtime's cores); clamped to them, and to 1 without shared memory. */
  readonly threads?: number;
  /** The runtime's threads (default: {@link threadSupport}); tests pass their own. */
  readonly support?: ThreadSupport;
}

/** Scratch of one thread in one arena. */
interface Scratch {
  at: number;
  bytes: number;
}

/**
 * The WebAssembly SIMD kernels (`assembly/`) over arenas of linear memory holding the weights, the
 * caches and the activations: one arena per group of layers (one for most models; more past what
 * one 4 GiB memory holds). Matrix products and attention split across a pool of worker threads over
 * shared memories when `threads` > 1; every output is computed by one thread with the same code
 * whatever the split, so results do not depend on the thread count. Matmuls sum in float32
 * (`assembly/matmul.ts`), attention and SwiGLU too, as HF transformers and onnxruntime do; the
 * rotation of `rerotateKeys` in float64, the bits of core's `rotateBlocks`.
 */
export class WasmKernels implements DecoderKernels {
  readonly kind = 'wasm' as const;
  readonly weightDtype: WeightDtype;
  readonly threads: number;
  readonly groups: readonly KernelGroup[];
  readonly arenas: readonly WasmArena[];
  private readonly cacheStorage: LayeredStorage;
  private readonly support: ThreadSupport;
  private readonly notes: string[] = [];
  private build: KernelBuild | undefined;
  private instances: KernelExports[] | undefined;
  private pool: KernelPool | undefined;
  private loading: Promise<void> | undefined;
  private disposed = false;
  private splitCount = 0;
  /** Per arena, per thread. */
  private readonly scratch: Scratch[][];
  /** Per arena: bytes a GEMM on 16- or 8-bit panels unpacks one panel into (inDim · 32 of its widest input). */
  private readonly unpackBytes: number[];

  constructor(options: WasmKernelOptions) {
    this.weightDtype = options.weightDtype ?? 'float32';
    this.support = options.support ?? threadSupport();
    this.threads = this.resolveThreads(options.threads);
    const shared = this.threads > 1;
    const plan = options.plan;
    this.arenas = plan.map(
      (g, i) =>
        new WasmArena({
          initialBytes: g.weightBytes,
          shared,
          label: plan.length === 1 ? 'the WebAssembly memory' : `WebAssembly memory ${i + 1} of ${plan.length} (${memoryContents(g, i === plan.length - 1)})`,
        }),
    );
    const arenaOfLayer: number[] = [];
    plan.forEach((g, i) => {
      for (let l = g.firstLayer; l < g.endLayer; l++) arenaOfLayer[l] = i;
    });
    this.cacheStorage = new LayeredStorage(this.arenas, arenaOfLayer);
    this.groups = plan.map((g, i) => ({ firstLayer: g.firstLayer, endLayer: g.endLayer, storage: this.arenas[i]! }));
    this.scratch = this.arenas.map(() => Array.from({ length: this.threads }, () => ({ at: 0, bytes: 0 })));
    this.unpackBytes = this.arenas.map(() => 0);
  }

  /** What computes: kernels, threads (and why fewer than asked), weights, memories. */
  get description(): string {
    const simd = this.build ? (this.build.relaxed ? 'relaxed SIMD (fused multiply-add)' : 'SIMD') : 'SIMD (not loaded yet)';
    const bytes = this.arenas.reduce((n, a) => n + a.usedBytes, 0);
    const size = bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
    const memories = `${this.arenas.length} WebAssembly ${this.arenas.length === 1 ? 'memory' : 'memories'} (${size})`;
    return [`CPU, WebAssembly ${simd} kernels, ${this.threads} thread${this.threads === 1 ? '' : 's'}`, ...this.notes, `${this.weightDtype} weights`, memories].join(', ');
  }

  /** Kernel calls so far that were split between threads (the rest ran on the calling thread alone). */
  get splitCalls(): number {
    return this.splitCount;
  }

  createCache(layout: KvCacheLayout): CpuKvCache {
    return new CpuKvCache(layout, 16, this.cacheStorage);
  }

  accepts(cache: CpuKvCache): boolean {
    return cache.kvStorage === this.cacheStorage;
  }

  get loaded(): boolean {
    return this.instances !== undefined && (this.threads === 1 || (this.pool !== undefined && this.pool.dead === undefined));
  }

  /** Compiles the module, instantiates it over every arena and starts the workers; a pool whose worker died is replaced. */
  async ready(): Promise<void> {
    if (this.disposed) throw new BackendError('disposed', 'the reference backend was disposed');
    if (this.pool?.dead !== undefined) {
      const dead = this.pool;
      this.pool = undefined;
      this.loading = undefined;
      await dead.close();
    }
    this.loading ??= this.load();
    try {
      await this.loading;
    } catch (e) {
      this.loading = undefined;
      throw e;
    }
  }

  private async load(): Promise<void> {
    const build = (this.build ??= await kernelBuild(this.threads > 1));
    this.instances ??= await Promise.all(this.arenas.map(async (a) => (await webAssembly.instantiate(build.module, { env: { memory: a.memory } })).exports as unknown as KernelExports));
    if (this.threads > 1) {
      this.pool = await KernelPool.start(this.support, this.threads, build.module, this.arenas.map((a) => a.memory), (kernel, arena, args, part) => this.runLocal(kernel, arena, args, part));
    }
    if (this.disposed) await this.pool?.close();
  }

  linear(w: Float32Array, outDim: number, inDim: number, bias: Float32Array | undefined, group: number, name: string): LinearWeights {
    const arena = this.arenas[group]!;
    const dtype = this.weightDtype;
    const scales = dtype === 'int8' ? int8Scales(w, outDim, inDim) : undefined;
    const padded = Math.ceil(outDim / 8) * 8;
    const at = arena.allocateBytes(panelBytes(dtype, outDim, inDim));
    const biasAt = bias ? arena.allocateBytes(4 * padded) : 0;
    const scalesAt = scales ? arena.allocateBytes(4 * padded) : 0;
    writePanels(dtype, w, outDim, inDim, arena.buffer, at, scales, name);
    if (bias) new Float32Array(arena.buffer, biasAt, outDim).set(bias.subarray(0, outDim));
    if (scales) new Float32Array(arena.buffer, scalesAt, outDim).set(scales);
    if (dtype !== 'float32') this.unpackBytes[group] = Math.max(this.unpackBytes[group]!, 32 * inDim);
    return new ArenaLinear(group, WEIGHT_DTYPE_CODE[dtype], at, biasAt, scalesAt, outDim, inDim);
  }

  reserveScratch(group: number, longest: number): void {
    const need = Math.max(this.unpackBytes[group]!, 8 * longest);
    const arena = this.arenas[group]!;
    for (const s of this.scratch[group]!) {
      if (s.bytes >= need) continue;
      if (s.bytes > 0) arena.release(s.at, s.bytes);
      s.at = 0;
      s.bytes = 0;
      // Some room to spare, so a sequence growing one token a step does not reallocate every step.
      const bytes = Math.ceil(need * 1.25);
      s.at = arena.allocateBytes(bytes);
      s.bytes = bytes;
    }
  }

  matmul(x: Float32Array, rows: number, w: LinearWeights, y: Float32Array): KernelCompletion {
    if (!(w instanceof ArenaLinear)) throw new BackendError('foreign-weights', 'these weights were not prepared by the WebAssembly kernels');
    const a = w.arena;
    const panels = Math.ceil(w.outDim / 8);
    const px = this.ptr(a, x);
    const py = this.ptr(a, y);
    if (!this.splits(rows * w.inDim * w.outDim, panels)) {
      this.kernels(a).linear(w.dtype, px, rows, w.inDim, w.weights, w.outDim, py, w.bias, w.scales, 0, panels, this.scratch[a]![0]!.at);
      return undefined;
    }
    return this.split('linear', a, [w.dtype, px, rows, w.inDim, w.weights, w.outDim, py, w.bias, w.scales], panels);
  }

  attention(...[q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out]: AttentionOperands): KernelCompletion {
    const a = this.arenaOf(keys);
    const row = 4 * qRow * numHeads * headDim;
    const pq = this.ptr(a, q) + row;
    const pk = this.ptr(a, keys);
    const pv = this.ptr(a, values);
    const po = this.ptr(a, out) + row;
    if (!this.splits(2 * numHeads * n * (past + n) * headDim, numHeads)) {
      this.kernels(a).attention(pq, n, past, pk, pv, capacity, numHeads, numKvHeads, headDim, po, 0, numHeads, this.scratch[a]![0]!.at);
      return undefined;
    }
    return this.split('attention', a, [pq, n, past, pk, pv, capacity, numHeads, numKvHeads, headDim, po], numHeads);
  }

  swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void {
    const a = this.arenaOf(gateUp);
    this.kernels(a).swiglu(this.ptr(a, gateUp), rows, size, this.ptr(a, out));
  }

  addInPlace(x: Float32Array, y: Float32Array, n: number): void {
    const a = this.arenaOf(x);
    this.kernels(a).addInPlace(this.ptr(a, x), this.ptr(a, y), n);
  }

  /**
   * core's `rotateBlocks` contract, run by the SIMD kernel on each arena's blocks when every block
   * lies in an arena (the tables and row indices are copied into each: a few hundred KiB against a
   * pass over the whole key cache); blocks elsewhere go to the TypeScript kernel. One thread: the
   * rotation is a single pass at memory speed.
   */
  readonly rotateBlocks: typeof rotateBlocks = (blocks, count, stride, pairing, tables, rows) => {
    const owner = blocks.map((b) => this.arenas.findIndex((a) => a.owns(b.data.buffer)));
    if (!this.instances || owner.some((o) => o < 0)) {
      rotateBlocks(blocks, count, stride, pairing, tables, rows);
      return;
    }
    // Offsets before allocating: growing a memory detaches the blocks' views, not their addresses.
    const at = blocks.map((b) => b.data.byteOffset + 4 * b.offset);
    const { half } = tables;
    let tableRows = 0;
    for (let k = 0; k < count; k++) tableRows = Math.max(tableRows, rows[k]! + 1);
    const interleaved = pairing === 'rotate-half' ? 0 : 1;
    for (const a of new Set(owner)) {
      const arena = this.arenas[a]!;
      const cos = arena.allocateBytes(4 * tableRows * half);
      const sin = arena.allocateBytes(4 * tableRows * half);
      const idx = arena.allocateBytes(4 * count);
      try {
        const mem = arena.buffer;
        new Float32Array(mem, cos, tableRows * half).set(tables.cos.subarray(0, tableRows * half));
        new Float32Array(mem, sin, tableRows * half).set(tables.sin.subarray(0, tableRows * half));
        const r = new Int32Array(mem, idx, count);
        for (let k = 0; k < count; k++) r[k] = rows[k]!;
        at.forEach((x, i) => {
          if (owner[i] === a) this.kernels(a).rotate(x, count, stride, half, interleaved, cos, sin, idx);
        });
      } finally {
        arena.release(idx, 4 * count);
        arena.release(sin, 4 * tableRows * half);
        arena.release(cos, 4 * tableRows * half);
      }
    }
  };

  async dispose(): Promise<void> {
    this.disposed = true;
    this.instances = undefined;
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  /** Whether a call of `macs` multiply-adds over `size` parts (panels, heads) is split between the threads. */
  private splits(macs: number, size: number): boolean {
    return this.pool !== undefined && macs >= PARALLEL_MIN_MACS && size >= 2;
  }

  /** Runs a kernel over `size` parts (panels, heads) in chunks the threads claim: four per thread, so a late one delays little. */
  private split(kernel: PoolKernel, arena: number, args: number[], size: number): KernelCompletion {
    const pool = this.pool!;
    this.splitCount++;
    const chunks = Math.min(size, 4 * pool.threads, MAX_CHUNKS);
    return pool.run({ kernel, arena, args, size, chunks, scratch: this.scratch[arena]!.map((s) => s.at) });
  }

  private runLocal(kernel: PoolKernel, arena: number, args: readonly number[], part: ThreadPart): void {
    const k = this.kernels(arena);
    if (kernel === 'linear') {
      const [dtype, x, rows, inDim, w, outDim, y, bias, scales] = args as [number, number, number, number, number, number, number, number, number];
      k.linear(dtype, x, rows, inDim, w, outDim, y, bias, scales, part.lo, part.hi, part.scratch);
    } else {
      const [q, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out] = args as [number, number, number, number, number, number, number, number, number, number];
      k.attention(q, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out, part.lo, part.hi, part.scratch);
    }
  }

  private resolveThreads(asked: number | undefined): number {
    const { cores, unavailable } = this.support;
    if (asked !== undefined && (!Number.isSafeInteger(asked) || asked < 1)) {
      throw new BackendError('bad-option', `threads must be a positive integer; got ${String(asked)}`);
    }
    let threads = asked ?? cores;
    if (threads > cores) {
      this.notes.push(`${threads} threads asked, clamped to the ${cores} cores`);
      threads = cores;
    }
    if (threads > 1 && unavailable !== undefined) {
      this.notes.push(`not ${threads}: ${unavailable}`);
      threads = 1;
    }
    return threads;
  }

  private kernels(arena: number): KernelExports {
    const k = this.instances?.[arena];
    if (!k) throw new BackendError('kernels-not-ready', 'the WebAssembly kernels are not loaded (await ready() first) or were disposed');
    return k;
  }

  private arenaOf(a: Float32Array): number {
    const i = this.arenas.findIndex((arena) => arena.owns(a.buffer));
    if (i < 0) throw new BackendError('foreign-buffer', 'a WebAssembly kernel was given an array outside its memories');
    return i;
  }

  /** Byte address of a view, which must lie in arena `arena` (and not be a view that growth detached). */
  private ptr(arena: number, a: Float32Array): number {
    if (!this.arenas[arena]!.owns(a.buffer) || (a.length > 0 && a.buffer.byteLength === 0)) {
      throw new BackendError('foreign-buffer', 'a WebAssembly kernel was given an array outside its memory');
    }
    return a.byteOffset;
  }
}

/** What a memory of a group holds, for error messages: `layers 4–7`, `layers 28–31, the LM head`, `the LM head`. */
function memoryContents(group: ArenaGroup, head: boolean): string {
  const layers = group.endLayer > group.firstLayer ? [`layers ${group.firstLayer}–${group.endLayer - 1}`] : [];
  return [...layers, ...(head ? ['the LM head'] : [])].join(', ');
}
