import {
  type AnglePrecision,
  BackendError,
  CpuKvCache,
  Float16KvCache,
  type ForwardRequest,
  type ForwardResult,
  type HostKvCache,
  type KvBlock,
  KvBlockPool,
  type KvCacheDtype,
  type KvElements,
  type ModelConfig,
  type RotaryTables,
  rotaryTables,
} from '@ropeswitch/core';
import * as ort from 'onnxruntime-node';
import { DecoderIo } from '../export/decoder-io.js';
import { PagePrefault } from './page-prefault.js';
import { type RowPiece, forwardInRuns, wantedLogits } from './row-runs.js';

/**
 * A prefill piece gets a compact copy of its cache's valid rows only while that copy (every layer's
 * keys and values) stays under this size: a 32-layer Phi-3-mini cache of 4096 rows is 3.2 GB.
 */
const COMPACT_LIMIT_BYTES = 256 * 2 ** 20;

/**
 * Never-read cache pages a run reads ahead ({@link PagePrefault}): this much per token of the run,
 * at least {@link PREFAULT_MIN_BYTES}. A prompt chunk of 256 tokens reads a whole 200 MB cache ahead
 * (about 25 ms of page faults in a forward of seconds); a decode step reads 16 MiB (about 2 ms).
 */
const PREFAULT_BYTES_PER_TOKEN = 2 ** 20;
const PREFAULT_MIN_BYTES = 16 * 2 ** 20;
/** While a cache still has pages nobody read, a piece attends to a compact copy of its valid rows if that copy is at most this size. */
const COMPACT_WHILE_PREFAULTING_BYTES = 16 * 2 ** 20;

/** A pool of host cache blocks of one element type: what a backend's caches and its prefill scratch come from. */
export type HostBlockPool = KvBlockPool<Float32Array> | KvBlockPool<Uint16Array>;

/** A block pool of element type `dtype` keeping up to `maxBytes` for reuse. */
export function hostBlockPool(dtype: KvCacheDtype, maxBytes: number): HostBlockPool {
  return dtype === 'float16' ? new KvBlockPool((n) => new Uint16Array(n), maxBytes) : new KvBlockPool((n) => new Float32Array(n), maxBytes);
}

/** An empty host cache of `config`'s layout and element type `dtype`, its blocks from `pool` (of that type) when given. */
export function createHostCache(config: ModelConfig, dtype: KvCacheDtype, pool?: HostBlockPool): HostKvCache {
  const { numLayers, numKvHeads, headDim } = config;
  const layout = { numLayers, numKvHeads, headDim };
  return dtype === 'float16' ? new Float16KvCache(layout, 16, pool as KvBlockPool<Uint16Array> | undefined) : new CpuKvCache(layout, 16, pool as KvBlockPool<Float32Array> | undefined);
}

/** Per-layer buffers a prefill piece's compact cache copies go into (the cache's element type), and the pool blocks they are. */
interface LayerScratch {
  /** Rows each buffer holds. */
  readonly rows: number;
  readonly keys: KvElements[];
  readonly values: KvElements[];
  readonly blocks: KvBlock<KvElements>[];
}

/** How a {@link DecoderRunner} cuts and feeds requests. */
export interface DecoderRunnerSettings {
  /** Row slots of the graph. */
  readonly slots: number;
  /** Most tokens of one row per run. */
  readonly prefillChunk: number;
  readonly anglePrecision: AnglePrecision;
  /** Element type of the graph's cache inputs and new-row outputs (and of the caches it is given). */
  readonly cacheDtype: KvCacheDtype;
}

/**
 * Runs forwards on a session of a graph with the {@link DecoderIo} contract — an export of
 * `OnnxRuntimeBackend`, or an onnxruntime-genai model rewritten to it — over caller-owned host
 * caches ({@link HostKvCache}, of the graph's element type): the request's rows packed into as few
 * session runs as the slots and the chunk allow (`forwardInRuns`), each cache's storage handed to
 * onnxruntime without a copy (a `Float16KvCache`'s bits as a `float16` tensor), the new rows
 * written back past each cache's length and committed when the last run succeeded.
 */
export class DecoderRunner {
  /** A one-row cache stand-in for slots with nothing cached (fully masked: past length 0). */
  private readonly emptyPast: ort.Tensor;
  /** The cache inputs' onnxruntime element type. */
  private readonly elem: 'float32' | 'float16';
  /** Which pages of each cache have been read, so the graph's first read of a fresh cache costs no spike. */
  private readonly prefault = new PagePrefault();

  /** @param pool Where a prefill's compact copies live (given back after each forward: the next one reuses them, without page faults). */
  constructor(
    private readonly config: ModelConfig,
    private readonly settings: DecoderRunnerSettings,
    private readonly pool: HostBlockPool,
  ) {
    this.elem = settings.cacheDtype;
    this.emptyPast = this.cacheTensor(this.allocElements(config.numKvHeads * config.headDim), [config.numKvHeads, 1, config.headDim]);
  }

  /** Rows one run carries. */
  get slots(): number {
    return this.settings.slots;
  }

  /** Runs `request` (already validated; `caches[i]` is row i's cache) on `session`. */
  async forward(session: ort.InferenceSession, request: ForwardRequest, caches: readonly HostKvCache[]): Promise<ForwardResult> {
    const tables = request.rows.map((row) => rotaryTables(row.regime, row.positions, this.settings.anglePrecision));
    const scratch = new Map<number, LayerScratch>();
    const limits = { slots: this.settings.slots, chunk: this.settings.prefillChunk };
    try {
      return await forwardInRuns(request, caches, limits, this.config.vocabSize, (pieces) => this.runPieces(session, request, caches, tables, scratch, pieces));
    } finally {
      for (const { blocks } of scratch.values()) for (const b of blocks) b.free();
    }
  }

  /**
   * One session run over `pieces` (at most one per row, at most `slots`): packs their tokens on one
   * axis, hands each its row's cache storage (or a compact copy of its valid rows), and writes the
   * new keys/values of each piece past its cache's written rows (uncommitted).
   */
  private async runPieces(
    session: ort.InferenceSession,
    request: ForwardRequest,
    caches: readonly HostKvCache[],
    tables: readonly RotaryTables[],
    scratch: Map<number, LayerScratch>,
    pieces: readonly RowPiece[],
  ): Promise<Float32Array[]> {
    const { numLayers, numKvHeads, headDim: D, vocabSize: V } = this.config;
    const half = this.config.rope.rotaryDim / 2;
    const T = pieces.reduce((n, p) => n + p.end - p.start, 0);
    const ids = new BigInt64Array(T);
    const cos = new Float32Array(T * half);
    const sin = new Float32Array(T * half);
    const offsets = new BigInt64Array(this.settings.slots + 1).fill(BigInt(T));
    const pastLengths = new BigInt64Array(this.settings.slots);
    const logitsIndex: bigint[] = [];
    const at: number[] = [];
    const valid: number[] = [];
    let t = 0;
    pieces.forEach((piece, s) => {
      const row = request.rows[piece.row]!;
      const S = piece.end - piece.start;
      for (let j = 0; j < S; j++) ids[t + j] = BigInt(row.tokens[piece.start + j]!);
      const tab = tables[piece.row]!;
      cos.set(tab.cos.subarray(piece.start * half, piece.end * half), t * half);
      sin.set(tab.sin.subarray(piece.start * half, piece.end * half), t * half);
      const { from, count } = wantedLogits(row, piece);
      for (let j = 0; j < count; j++) logitsIndex.push(BigInt(t + from - piece.start + j));
      const past = caches[piece.row]!.length + piece.start;
      offsets[s] = BigInt(t);
      pastLengths[s] = BigInt(past);
      at.push(t);
      valid.push(past);
      t += S;
    });
    const feeds: Record<string, ort.Tensor> = {
      [DecoderIo.inputIds]: new ort.Tensor('int64', ids, [T]),
      [DecoderIo.ropeCos]: new ort.Tensor('float32', cos, [T, half]),
      [DecoderIo.ropeSin]: new ort.Tensor('float32', sin, [T, half]),
      [DecoderIo.rowOffsets]: new ort.Tensor('int64', offsets, [this.settings.slots + 1]),
      [DecoderIo.pastLengths]: new ort.Tensor('int64', pastLengths, [this.settings.slots]),
      [DecoderIo.logitsIndex]: new ort.Tensor('int64', BigInt64Array.from(logitsIndex), [logitsIndex.length]),
    };
    let prefaultBudget = Math.max(PREFAULT_MIN_BYTES, T * PREFAULT_BYTES_PER_TOKEN);
    for (let s = 0; s < this.settings.slots; s++) {
      const piece = pieces[s];
      const cache = piece && caches[piece.row]!;
      const S = piece ? piece.end - piece.start : 0;
      const v = valid[s] ?? 0;
      // Reads nothing once the cache's pages have all been read.
      if (cache && prefaultBudget > 0) prefaultBudget -= this.prefault.advance(cache, v, prefaultBudget);
      // A prefill piece scans every row of the tensors it gets: when the cache's capacity is well
      // past its valid rows (a long row reserved its full length up front), a compact copy of the
      // valid rows costs less than attending over the rest, if the copy stays small. Any other
      // piece gets the cache itself, once its pages have all been read ahead; until then (a
      // shadow copy's first steps) a small compact copy, so no run pays the faults of the rest.
      const prefill = cache !== undefined && v > 0 && S >= 16 && (cache.capacity - v) * S > 4 * v && this.scratchBytes(cache.capacity) <= COMPACT_LIMIT_BYTES;
      const unread = cache !== undefined && v > 0 && !prefill && !this.prefault.done(cache, v) && this.scratchBytes(v) <= COMPACT_WHILE_PREFAULTING_BYTES;
      const rows = prefill ? cache!.capacity : v;
      let rowScratch = prefill || unread ? scratch.get(piece!.row) : undefined;
      if ((prefill || unread) && !(rowScratch && rowScratch.rows >= rows)) {
        // Too small for this piece (an earlier run of the forward had fewer rows): the run that used it is over.
        for (const b of rowScratch?.blocks ?? []) b.free();
        scratch.set(piece!.row, (rowScratch = this.allocScratch(rows)));
      }
      for (let l = 0; l < numLayers; l++) {
        let k: ort.Tensor;
        let val: ort.Tensor;
        if (!cache || v === 0) {
          k = val = this.emptyPast;
        } else if (rowScratch) {
          k = this.compactRows(cache, cache.keys(l), v, rowScratch.keys[l]!);
          val = this.compactRows(cache, cache.values(l), v, rowScratch.values[l]!);
        } else {
          // The cache's own storage, no copy; rows past the valid ones are masked out by the graph.
          k = this.cacheTensor(cache.keys(l), [numKvHeads, cache.capacity, D]);
          val = this.cacheTensor(cache.values(l), [numKvHeads, cache.capacity, D]);
        }
        feeds[DecoderIo.pastKey(l, s)] = k;
        feeds[DecoderIo.pastValue(l, s)] = val;
      }
    }
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await session.run(feeds);
    } catch (cause) {
      throw new BackendError('run', `onnxruntime failed on a run of ${pieces.length} rows, ${T} tokens: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
    for (let l = 0; l < numLayers; l++) {
      // The cache's element type (float16 rows were rounded by the graph's Cast).
      const k = out[DecoderIo.newKey(l)]!.data as KvElements;
      const v = out[DecoderIo.newValue(l)]!.data as KvElements;
      pieces.forEach((piece, s) => {
        const cache = caches[piece.row]!;
        const keys = cache.keys(l);
        const values = cache.values(l);
        const S = piece.end - piece.start;
        // New rows arrive as [kvHead][T][D]: each piece's rows are one contiguous block per head, as in the cache.
        for (let h = 0; h < numKvHeads; h++) {
          const from = (h * T + at[s]!) * D;
          const to = cache.offset(h, valid[s]!);
          keys.set(k.subarray(from, from + S * D), to);
          values.set(v.subarray(from, from + S * D), to);
        }
      });
    }
    const logits = out[DecoderIo.logits]!.data as Float32Array;
    let taken = 0;
    return pieces.map((piece) => {
      const { count } = wantedLogits(request.rows[piece.row]!, piece);
      const part = logits.subarray(taken * V, (taken + count) * V);
      taken += count;
      return part;
    });
  }

  /** Bytes of a compact copy of every layer's keys and values, `rows` rows each. */
  private scratchBytes(rows: number): number {
    const { numLayers, numKvHeads, headDim } = this.config;
    return 2 * numLayers * numKvHeads * rows * headDim * (this.elem === 'float16' ? 2 : 4);
  }

  /** Per-layer buffers for compact copies of up to `rows` cached rows (a prefill's scratch). */
  private allocScratch(rows: number): LayerScratch {
    const { numLayers, numKvHeads, headDim } = this.config;
    const blocks: KvBlock<KvElements>[] = [];
    const alloc = () =>
      Array.from({ length: numLayers }, () => {
        const block: KvBlock<KvElements> = this.pool.allocate(numKvHeads * rows * headDim);
        blocks.push(block);
        return block.view;
      });
    return { rows, keys: alloc(), values: alloc(), blocks };
  }

  /** `length` zeroed elements of the cache element type. */
  private allocElements(length: number): KvElements {
    return this.elem === 'float16' ? new Uint16Array(length) : new Float32Array(length);
  }

  /** A cache input over `data` (no copy): float32 values, or binary16 bits as a `float16` tensor. */
  private cacheTensor(data: KvElements, dims: readonly number[]): ort.Tensor {
    return this.elem === 'float16' ? new ort.Tensor('float16', data as Uint16Array, dims) : new ort.Tensor('float32', data as Float32Array, dims);
  }

  /** Rows [0, `valid`) of every head of `layer` (`[kvHead][capacity][D]`) packed into `into` as `[kvHead][valid][D]`. */
  private compactRows(cache: HostKvCache, layer: KvElements, valid: number, into: KvElements): ort.Tensor {
    const { numKvHeads, headDim: D } = this.config;
    for (let h = 0; h < numKvHeads; h++) {
      const from = cache.offset(h, 0);
      into.set(layer.subarray(from, from + valid * D), h * valid * D);
    }
    return this.cacheTensor(into.subarray(0, numKvHeads * valid * D), [numKvHeads, valid, D]);
  }
}
