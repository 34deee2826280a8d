import {
  type AnglePrecision,
  type Backend,
  type BackendCapabilities,
  BackendError,
  CpuKvCache,
  CpuRerotation,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  type RowLogits,
  type WeightStore,
  readDecoderWeights,
  rotateBlocks,
  rotaryTables,
  validateForwardRequest,
} from '@ropeswitch/core';
import type { DecoderKernels, KvBlock, LinearWeights, ReferenceKernels } from './kernels/decoder-kernels.js';
import { rmsNorm } from './kernels/rms-norm.js';
import { TypeScriptKernels } from './kernels/typescript-kernels.js';
import { WasmKernels } from './kernels/wasm/wasm-kernels.js';

/** Options of the reference backend. */
export interface ReferenceBackendOptions {
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
  /**
   * `wasm` (default): WebAssembly SIMD kernels (float32), with the weights, caches and activations
   * in one WebAssembly memory (at most 4 GiB: larger models need `typescript`). `typescript`: the
   * plain TypeScript kernels on JS-heap `Float32Array`s (float64 sums), the readable definition the
   * WebAssembly ones are checked against. Logits of the two agree to ~1e-5.
   */
  readonly kernels?: ReferenceKernels;
}

/** One decoder layer's weights as the kernels use them. */
interface PreparedLayer {
  readonly inputNorm: Float32Array;
  readonly qkv: LinearWeights;
  readonly o: LinearWeights;
  readonly postAttentionNorm: Float32Array;
  readonly gateUp: LinearWeights;
  readonly down: LinearWeights;
}

interface PreparedWeights {
  /** `[vocab][hidden]`, on the JS heap (rows are copied into the activations). */
  readonly embed: Float32Array;
  readonly layers: readonly PreparedLayer[];
  readonly finalNorm: Float32Array;
  readonly lmHead: LinearWeights;
}

/**
 * A Phi-3 / Llama-family decoder on the CPU: embedding, RMSNorm, fused or split QKV, GQA, partial
 * rotary, SwiGLU, tied embeddings. The correctness anchor every other backend is checked against.
 * Its hot kernels are WebAssembly SIMD by default, plain TypeScript on request (see
 * {@link ReferenceBackendOptions.kernels}).
 *
 * One forward call runs all its rows through each weight matrix together (rows are stacked into
 * one activation matrix); only attention runs per row, over that row's own cache and regime.
 */
export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly capabilities: BackendCapabilities;
  /** The kernels this backend computes with (see {@link ReferenceBackendOptions.kernels}). */
  readonly kernels: ReferenceKernels;
  private readonly ops: DecoderKernels;
  private weights: PreparedWeights | undefined;
  /** Rotates any CPU cache's keys; blocks outside the kernels' memory rotate in TypeScript, to the same bits. */
  private readonly rerotation: CpuRerotation;

  constructor(
    readonly config: ModelConfig,
    store: WeightStore,
    options: ReferenceBackendOptions = {},
  ) {
    const w = readDecoderWeights(config, store);
    this.kernels = options.kernels ?? 'wasm';
    if (this.kernels !== 'wasm' && this.kernels !== 'typescript') {
      throw new BackendError('bad-option', `unknown kernels ${String(this.kernels)}: 'wasm' or 'typescript'`);
    }
    const k: DecoderKernels = this.kernels === 'wasm' ? new WasmKernels() : new TypeScriptKernels();
    this.ops = k;
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = config;
    const qkvDim = (numHeads + 2 * numKvHeads) * headDim;
    this.weights = {
      embed: w.embed,
      layers: w.layers.map((lw) => ({
        inputNorm: lw.inputNorm,
        qkv: k.linear(lw.qkv, qkvDim, H, lw.qkvBias),
        o: k.linear(lw.o, H, numHeads * headDim),
        postAttentionNorm: lw.postAttentionNorm,
        gateUp: k.linear(lw.gateUp, 2 * I, H, lw.gateUpBias),
        down: k.linear(lw.down, H, I, lw.downBias),
      })),
      finalNorm: w.finalNorm,
      lmHead: k.linear(w.lmHead, vocabSize, H),
    };
    this.capabilities = {
      cacheLocation: 'cpu',
      maxRows: Infinity,
      rerotateKeys: true,
      anglePrecision: options.anglePrecision ?? 'float32',
    };
    this.rerotation = new CpuRerotation(config, { backendName: this.name, anglePrecision: this.capabilities.anglePrecision, kernel: k });
  }

  /** A CPU cache; with the WebAssembly kernels its keys and values live in their memory. */
  createCache(): CpuKvCache {
    const { numLayers, numKvHeads, headDim } = this.config;
    return this.ops.createCache({ numLayers, numKvHeads, headDim });
  }

  rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    return this.rerotation.rerotateKeys(cache, to);
  }

  prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    return this.rerotation.prepareRerotation(from, to, positions);
  }

  async dispose(): Promise<void> {
    this.weights = undefined;
    this.ops.dispose();
    this.rerotation.clear();
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    if (!this.weights) throw new BackendError('disposed', 'the reference backend was disposed');
    validateForwardRequest(this.config, this.capabilities, request);
    const caches = request.rows.map((row) => this.asOwnCache(row.cache));
    await this.ops.ready();
    // From here on nothing awaits, so no other call allocates from the kernels' memory (and so
    // moves it) while this forward holds views into it.
    const w = this.weights;
    if (!w) throw new BackendError('disposed', 'the reference backend was disposed');
    const k = this.ops;
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, rmsNormEps: eps } = c;
    const qDim = numHeads * headDim;
    const kvDim = numKvHeads * headDim;
    const qkvDim = qDim + 2 * kvDim;

    const starts: number[] = [];
    let total = 0;
    let logitRows = 0;
    for (const row of request.rows) {
      starts.push(total);
      total += row.tokens.length;
      logitRows += row.logits ?? 1;
    }
    const longest = Math.max(...request.rows.map((row, ri) => caches[ri]!.length + row.tokens.length));
    // Sliding-window attention (Mistral, some Qwen2) is not implemented: refuse rather than differ.
    if (c.slidingWindow !== undefined && longest > c.slidingWindow) {
      throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${c.slidingWindow}), which the reference backend does not implement`);
    }
    // Every allocation comes before any view is taken: growing the kernels' memory (a cache's
    // reserve, a block) detaches the views taken before it.
    request.rows.forEach((row, ri) => caches[ri]!.reserve(row.tokens.length));
    const blocks: KvBlock[] = [];
    const alloc = (length: number): KvBlock => {
      const b = k.storage.allocate(length);
      blocks.push(b);
      return b;
    };
    try {
      // Activations: [token][...] over every row's new tokens stacked together.
      const bx = alloc(total * H), bxn = alloc(total * H), bqkv = alloc(total * qkvDim), bq = alloc(total * qDim);
      const battn = alloc(total * qDim), bproj = alloc(total * H), bgateUp = alloc(total * 2 * I), bact = alloc(total * I);
      const bscores = alloc(2 * longest), bhidden = alloc(logitRows * H), blogits = alloc(logitRows * c.vocabSize);
      const [x, xn, qkv, q, attn, proj, gateUp, act, scores, hidden, logits] = [bx, bxn, bqkv, bq, battn, bproj, bgateUp, bact, bscores, bhidden, blogits].map((b) => b.view) as [
        Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array,
      ];
      const rows = request.rows.map((row, ri) => {
        const cache = caches[ri]!;
        const n = row.tokens.length;
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
        k.matmul(xn, total, lw.qkv, qkv);
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
          k.attention(q, starts[ri]!, n, r.past, keys, values, r.cache.capacity, numHeads, numKvHeads, headDim, attn, scores);
        });
        k.matmul(attn, total, lw.o, proj);
        k.addInPlace(x, proj);
        rmsNorm(x, total, H, lw.postAttentionNorm, eps, xn);
        k.matmul(xn, total, lw.gateUp, gateUp);
        k.swiglu(gateUp, total, I, act);
        k.matmul(act, total, lw.down, proj);
        k.addInPlace(x, proj);
      }
      request.signal?.throwIfAborted();

      // The rows asking for logits, stacked: final norm, then one pass over the LM head for all.
      let at = 0;
      const spans = rows.map((r, ri) => {
        const count = r.row.logits ?? 1;
        const first = starts[ri]! + r.row.tokens.length - count;
        rmsNorm(x.subarray(first * H, (first + count) * H), count, H, w.finalNorm, eps, hidden.subarray(at * H, (at + count) * H));
        at += count;
        return { count, from: at - count };
      });
      k.matmul(hidden, logitRows, w.lmHead, logits);
      const outputs: RowLogits[] = spans.map(({ count, from }) => ({
        count,
        vocabSize: c.vocabSize,
        data: logits.slice(from * c.vocabSize, (from + count) * c.vocabSize),
      }));
      // Every row succeeded: only now do the new rows become part of each cache.
      for (const r of rows) r.cache.commit(r.row.tokens, r.row.positions, r.row.regime);
      return { rows: outputs };
    } finally {
      for (const b of blocks) b.free();
    }
  }

  /** A CPU cache these kernels can compute on (for the WebAssembly kernels: one of this backend's). */
  private asOwnCache(cache: KvCache): CpuKvCache {
    if (!(cache instanceof CpuKvCache) || !this.ops.accepts(cache)) {
      throw new BackendError('cache-type', `the reference backend (${this.kernels} kernels) needs caches made by its createCache()`);
    }
    return cache;
  }
}
