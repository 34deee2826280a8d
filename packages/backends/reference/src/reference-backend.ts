import {
  type AnglePrecision,
  type Backend,
  type BackendCapabilities,
  BackendError,
  CpuKvCache,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  RerotationTableCache,
  type RopeRegime,
  createRopeSchedule,
  type RowLogits,
  type WeightStore,
  positionLimit,
  rerotateCpuKeys,
  rotateBlocks,
  rotaryTables,
  validateForwardRequest,
} from '@ropeswitch/core';
import { type DecoderWeights, readDecoderWeights } from './decoder-weights.js';
import { attention } from './kernels/attention.js';
import { matmul } from './kernels/matmul.js';
import { rmsNorm } from './kernels/rms-norm.js';
import { swiglu } from './kernels/swiglu.js';

/** Options of the reference backend. */
export interface ReferenceBackendOptions {
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
}

/**
 * A Phi-3 / Llama-family decoder in TypeScript on `Float32Array`s: embedding, RMSNorm, fused or
 * split QKV, GQA, partial rotary, SwiGLU, tied embeddings. The correctness anchor every other
 * backend is checked against.
 *
 * One forward call runs all its rows through each weight matrix together (rows are stacked into
 * one activation matrix); only attention runs per row, over that row's own cache and regime.
 */
export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly capabilities: BackendCapabilities;
  private weights: DecoderWeights | undefined;
  /**
   * Rerotation cos/sin per (from, to) move, kept across calls and prepared ahead by
   * `prepareRerotation`; none for schedules with a new regime at every step (dynamic NTK), whose
   * moves do not come back.
   */
  private readonly rerotationTables: RerotationTableCache | undefined;

  constructor(
    readonly config: ModelConfig,
    store: WeightStore,
    options: ReferenceBackendOptions = {},
  ) {
    this.weights = readDecoderWeights(config, store);
    this.capabilities = {
      cacheLocation: 'cpu',
      maxRows: Infinity,
      rerotateKeys: true,
      anglePrecision: options.anglePrecision ?? 'float32',
    };
    this.rerotationTables = createRopeSchedule(config.rope).changesEveryStep ? undefined : new RerotationTableCache();
  }

  createCache(): CpuKvCache {
    const { numLayers, numKvHeads, headDim } = this.config;
    return new CpuKvCache({ numLayers, numKvHeads, headDim });
  }

  async rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    this.checkRegime(to);
    rerotateCpuKeys(asCpuCache(cache), to, this.config.rope.pairing, this.capabilities.anglePrecision, this.rerotationTables);
  }

  async prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    this.checkRegime(from);
    this.checkRegime(to);
    const limit = positionLimit(this.config);
    if (!Number.isSafeInteger(positions) || positions < 0 || positions > limit) {
      throw new BackendError('bad-positions', `cannot prepare rerotation tables for ${positions} positions: an integer in [0, ${limit}] (the model's position limit) is needed`);
    }
    this.rerotationTables?.prepare(from, to, positions, this.capabilities.anglePrecision);
  }

  private checkRegime(regime: RopeRegime): void {
    if (regime.invFreq.length !== this.config.rope.rotaryDim / 2) {
      throw new BackendError('regime-size', `regime ${regime.id} has ${regime.invFreq.length} frequencies; the model rotates ${this.config.rope.rotaryDim / 2} pairs`);
    }
  }

  async dispose(): Promise<void> {
    this.weights = undefined;
    this.rerotationTables?.clear();
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const w = this.weights;
    if (!w) throw new BackendError('disposed', 'the reference backend was disposed');
    validateForwardRequest(this.config, this.capabilities, request);
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, rmsNormEps: eps } = c;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const qkvDim = qDim + 2 * kvDim;

    const starts: number[] = [];
    let total = 0;
    for (const row of request.rows) {
      starts.push(total);
      total += row.tokens.length;
    }
    // Activations: [token][...] over every row's new tokens stacked together.
    const x = new Float32Array(total * H);
    const xn = new Float32Array(total * H);
    const qkv = new Float32Array(total * qkvDim);
    const q = new Float32Array(total * qDim);
    const attn = new Float32Array(total * qDim);
    const proj = new Float32Array(total * H);
    const gateUp = new Float32Array(total * 2 * I);
    const act = new Float32Array(total * I);
    const rows = request.rows.map((row, ri) => {
      const cache = asCpuCache(row.cache);
      const n = row.tokens.length;
      cache.reserve(n);
      const start = starts[ri]!;
      return {
        row,
        cache,
        past: cache.length,
        tables: rotaryTables(row.regime, row.positions, this.capabilities.anglePrecision),
        // Token t of the row rotates by table row t; its heads are blocks of the stacked activations.
        tableRows: Int32Array.from({ length: n }, (_, t) => t),
        queryHeads: Array.from({ length: numHeads }, (_, h) => ({ data: q, offset: start * qDim + h * headDim })),
        keyHeads: Array.from({ length: numKvHeads }, (_, g) => ({ data: qkv, offset: start * qkvDim + qDim + g * headDim })),
      };
    });
    const longest = Math.max(...rows.map((r) => r.past + r.row.tokens.length));
    // Sliding-window attention (Mistral, some Qwen2) is not implemented: refuse rather than differ.
    if (c.slidingWindow !== undefined && longest > c.slidingWindow) {
      throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${c.slidingWindow}), which the reference backend does not implement`);
    }

    const scores = new Float64Array(4 * longest);

    rows.forEach((r, ri) => {
      for (let t = 0; t < r.row.tokens.length; t++) {
        const id = r.row.tokens[t]!;
        x.set(w.embed.subarray(id * H, (id + 1) * H), (starts[ri]! + t) * H);
      }
    });

    for (let l = 0; l < w.layers.length; l++) {
      request.signal?.throwIfAborted();
      const lw = w.layers[l]!;
      rmsNorm(x, total, H, lw.inputNorm, eps, xn);
      matmul(xn, total, H, lw.qkv, qkvDim, qkv, lw.qkvBias);
      rows.forEach((r, ri) => {
        const n = r.row.tokens.length;
        const keys = r.cache.keys(l);
        const values = r.cache.values(l);
        for (let t = 0; t < n; t++) {
          const src = (starts[ri]! + t) * qkvDim;
          q.set(qkv.subarray(src, src + qDim), (starts[ri]! + t) * qDim);
        }
        rotateBlocks(r.queryHeads, n, qDim, c.rope.pairing, r.tables, r.tableRows);
        rotateBlocks(r.keyHeads, n, qkvDim, c.rope.pairing, r.tables, r.tableRows);
        for (let t = 0; t < n; t++) {
          const src = (starts[ri]! + t) * qkvDim;
          for (let g = 0; g < numKvHeads; g++) {
            const dst = r.cache.offset(g, r.past + t);
            keys.set(qkv.subarray(src + qDim + g * headDim, src + qDim + (g + 1) * headDim), dst);
            values.set(qkv.subarray(src + qDim + kvDim + g * headDim, src + qDim + kvDim + (g + 1) * headDim), dst);
          }
        }
        attention(q, starts[ri]!, n, r.past, keys, values, r.cache.capacity, numHeads, numKvHeads, headDim, attn, scores);
      });
      matmul(attn, total, qDim, lw.o, H, proj);
      addInPlace(x, proj);
      rmsNorm(x, total, H, lw.postAttentionNorm, eps, xn);
      matmul(xn, total, H, lw.gateUp, 2 * I, gateUp, lw.gateUpBias);
      swiglu(gateUp, total, I, act);
      matmul(act, total, I, lw.down, H, proj, lw.downBias);
      addInPlace(x, proj);
    }
    request.signal?.throwIfAborted();

    const outputs: RowLogits[] = rows.map((r, ri) => {
      const n = r.row.tokens.length;
      const count = r.row.logits ?? 1;
      const first = starts[ri]! + n - count;
      const hidden = new Float32Array(count * H);
      rmsNorm(x.subarray(first * H, (first + count) * H), count, H, w.finalNorm, eps, hidden);
      const data = new Float32Array(count * c.vocabSize);
      matmul(hidden, count, H, w.lmHead, c.vocabSize, data);
      return { count, vocabSize: c.vocabSize, data };
    });
    // Every row succeeded: only now do the new rows become part of each cache.
    for (const r of rows) r.cache.commit(r.row.tokens, r.row.positions, r.row.regime);
    return { rows: outputs };
  }
}

function addInPlace(x: Float32Array, y: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
}

function asCpuCache(cache: KvCache): CpuKvCache {
  if (!(cache instanceof CpuKvCache)) {
    throw new BackendError('cache-type', 'the reference backend needs caches made by its createCache()');
  }
  return cache;
}
