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
import type { DecoderKernels, KernelCompletion, KvBlock, LinearWeights, ReferenceKernels } from './kernels/decoder-kernels.js';
import { rmsNorm } from './kernels/rms-norm.js';
import { TypeScriptKernels } from './kernels/typescript-kernels.js';
import { DEFAULT_ARENA_WEIGHT_BYTES, planArenas } from './kernels/wasm/arena-plan.js';
import { WasmKernels } from './kernels/wasm/wasm-kernels.js';
import { type WeightDtype, checkWeightDtype, panelBytes } from './kernels/weight-dtype.js';

/** Options of the reference backend. */
export interface ReferenceBackendOptions {
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
  /**
   * `wasm` (default): WebAssembly SIMD kernels, with the weights, caches and activations in
   * WebAssembly memories (one per group of layers: a model of any size loads). `typescript`: the
   * plain TypeScript kernels on JS-heap `Float32Array`s (float64 sums), one thread, the readable
   * definition the WebAssembly ones are checked against. Logits of the two agree to ~1e-5.
   */
  readonly kernels?: ReferenceKernels;
  /**
   * Compute threads of the WebAssembly kernels, the calling thread included (default: the cores the
   * runtime reports). More than the cores is clamped to them; where memory cannot be shared (a
   * browser page that is not cross-origin isolated) it is 1. `deviceDescription` says what ran and
   * why. Results do not depend on it. Not a positive integer: `BackendError('bad-option')`.
   */
  readonly threads?: number;
  /**
   * How weight matrices are stored (default `float32`, exact): `bfloat16` (lossless for bf16
   * checkpoints), `float16` or `int8` (per-row scaled) halve or quarter their memory, at the cost
   * in accuracy the package README measures. See {@link WeightDtype}.
   */
  readonly weights?: WeightDtype;
  /**
   * Weight bytes placed in one WebAssembly memory before the next one starts (default 2 GiB, the
   * rest of each 4 GiB memory left to its layers' KV caches and the activations).
   */
  readonly arenaWeightBytes?: number;
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
 * Its hot kernels are WebAssembly SIMD on every core by default, plain TypeScript on request (see
 * {@link ReferenceBackendOptions}).
 *
 * One forward call runs all its rows through each weight matrix together (rows are stacked into
 * one activation matrix); only attention runs per row, over that row's own cache and regime.
 * Forward calls and rerotations on one backend run one at a time, in call order.
 */
export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly capabilities: BackendCapabilities;
  /** The kernels this backend computes with (see {@link ReferenceBackendOptions.kernels}). */
  readonly kernels: ReferenceKernels;
  /** How its weight matrices are stored (see {@link ReferenceBackendOptions.weights}). */
  readonly weightDtype: WeightDtype;
  private readonly ops: DecoderKernels;
  private weights: PreparedWeights | undefined;
  /** Rotates any CPU cache's keys; blocks outside the kernels' memory rotate in TypeScript, to the same bits. */
  private readonly rerotation: CpuRerotation;
  /** The call in flight: forwards and rerotations queue behind it. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Per layer group, activation blocks kept across small forwards (see {@link activationBlocks}). */
  private readonly kept: ({ tokens: number; logitRows: number; blocks: KvBlock[] } | undefined)[] = [];

  /**
   * Reads and prepares the weights (each layer converted into kernel memory as it is read, so
   * opening a model holds the converted weights and one layer as read). The store may be closed
   * once this returns.
   */
  constructor(
    readonly config: ModelConfig,
    store: WeightStore,
    options: ReferenceBackendOptions = {},
  ) {
    this.kernels = options.kernels ?? 'wasm';
    if (this.kernels !== 'wasm' && this.kernels !== 'typescript') {
      throw new BackendError('bad-option', `unknown kernels ${String(this.kernels)}: 'wasm' or 'typescript'`);
    }
    this.weightDtype = checkWeightDtype(options.weights ?? 'float32');
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = config;
    const qkvDim = (numHeads + 2 * numKvHeads) * headDim;
    const dtype = this.weightDtype;
    const layerBytes = panelBytes(dtype, qkvDim, H) + panelBytes(dtype, H, numHeads * headDim) + panelBytes(dtype, 2 * I, H) + panelBytes(dtype, H, I);
    const budget = options.arenaWeightBytes ?? DEFAULT_ARENA_WEIGHT_BYTES;
    if (!(budget > 0)) throw new BackendError('bad-option', `arenaWeightBytes must be positive; got ${String(options.arenaWeightBytes)}`);
    const k: DecoderKernels =
      this.kernels === 'wasm'
        ? new WasmKernels({
            plan: planArenas(Array.from({ length: config.numLayers }, () => layerBytes), panelBytes(dtype, vocabSize, H), budget),
            weightDtype: dtype,
            ...(options.threads !== undefined ? { threads: options.threads } : {}),
          })
        : new TypeScriptKernels(config.numLayers, dtype);
    this.ops = k;
    const groupOf = (layer: number) => k.groups.findIndex((g) => layer >= g.firstLayer && layer < g.endLayer);
    const head = k.groups.length - 1;
    const w = readDecoderWeights(config, store, (lw, l): PreparedLayer => {
      const g = groupOf(l);
      const name = (m: string) => `model.layers.${l}.${m}`;
      return {
        inputNorm: lw.inputNorm,
        qkv: k.linear(lw.qkv, qkvDim, H, lw.qkvBias, g, name('self_attn.qkv')),
        o: k.linear(lw.o, H, numHeads * headDim, undefined, g, name('self_attn.o_proj')),
        postAttentionNorm: lw.postAttentionNorm,
        gateUp: k.linear(lw.gateUp, 2 * I, H, lw.gateUpBias, g, name('mlp.gate_up')),
        down: k.linear(lw.down, H, I, lw.downBias, g, name('mlp.down_proj')),
      };
    });
    this.weights = { embed: w.embed, layers: w.layers, finalNorm: w.finalNorm, lmHead: k.linear(w.lmHead, vocabSize, H, undefined, head, 'lm_head') };
    this.capabilities = {
      cacheLocation: 'cpu',
      maxRows: Infinity,
      rerotateKeys: true,
      anglePrecision: options.anglePrecision ?? 'float32',
      prunesLastLayer: true,
    };
    this.rerotation = new CpuRerotation(config, { backendName: this.name, anglePrecision: this.capabilities.anglePrecision, kernel: k });
  }

  /** Threads a kernel call uses (see {@link ReferenceBackendOptions.threads}). */
  get threads(): number {
    return this.ops.threads;
  }

  /** What computes: kernel set, threads (and why fewer than asked), weight dtype, memories. */
  get deviceDescription(): string {
    return this.ops.description;
  }

  /** A CPU cache; with the WebAssembly kernels its keys and values live in their memories. */
  createCache(): CpuKvCache {
    const { numLayers, numKvHeads, headDim } = this.config;
    return this.ops.createCache({ numLayers, numKvHeads, headDim });
  }

  rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    return this.exclusive(() => this.rerotation.rerotateKeys(cache, to));
  }

  prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    return this.rerotation.prepareRerotation(from, to, positions);
  }

  /** Frees the weights and ends the worker threads, once the calls in flight have finished. */
  async dispose(): Promise<void> {
    this.weights = undefined;
    await this.queue.catch(() => undefined);
    for (const kept of this.kept.splice(0)) for (const b of kept?.blocks ?? []) b.free();
    await this.ops.dispose();
    this.rerotation.clear();
  }

  forward(request: ForwardRequest): Promise<ForwardResult> {
    if (!this.weights) return Promise.reject(new BackendError('disposed', 'the reference backend was disposed'));
    try {
      validateForwardRequest(this.config, this.capabilities, request);
      const caches = request.rows.map((row) => this.asOwnCache(row.cache));
      return this.exclusive(() => this.run(request, caches));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Runs `f` once the calls before it have settled. */
  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(request: ForwardRequest, caches: readonly CpuKvCache[]): Promise<ForwardResult> {
    if (!this.ops.loaded) await this.ops.ready();
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
    let longest = 0;
    request.rows.forEach((row, ri) => {
      starts.push(total);
      total += row.tokens.length;
      logitRows += row.logits ?? 1;
      longest = Math.max(longest, caches[ri]!.length + row.tokens.length);
    });
    // Sliding-window attention (Mistral, some Qwen2) is not implemented: refuse rather than differ.
    if (c.slidingWindow !== undefined && longest > c.slidingWindow) {
      throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${c.slidingWindow}), which the reference backend does not implement`);
    }
    // Every allocation of a memory comes before any view into it is taken: growing an unshared
    // memory (a cache's reserve, a block) detaches the views taken before it.
    request.rows.forEach((row, ri) => caches[ri]!.reserve(row.tokens.length));
    const tables = request.rows.map((row) => rotaryTables(row.regime, row.positions, this.capabilities.anglePrecision));
    const tableRows = request.rows.map((row) => Int32Array.from({ length: row.tokens.length }, (_, t) => t));
    const temporary: KvBlock[] = [];
    let carried: Float32Array | undefined;
    // A kernel call that still waits for worker threads; awaited only then, so a call that finished
    // here costs no turn of the event loop.
    let pending: KernelCompletion;
    try {
      for (const [g, group] of k.groups.entries()) {
        const last = g === k.groups.length - 1;
        k.reserveScratch(g, longest);
        // Activations: [token][...] over every row's new tokens stacked together.
        const sizes = activationSizes(c, total, last ? logitRows : 0);
        const blocks = this.activationBlocks(g, total, logitRows, last, temporary);
        const [x, xn, qkv, q, attn, proj, gateUp, act, hidden, logits] = blocks.map((b, i) => b.view.subarray(0, sizes[i])) as [
          Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array, Float32Array,
        ];
        if (carried) {
          // Only the hidden state crosses from one memory to the next.
          x.set(carried);
        } else {
          request.rows.forEach((row, ri) => {
            for (let t = 0; t < row.tokens.length; t++) {
              const id = row.tokens[t]!;
              x.set(w.embed.subarray(id * H, (id + 1) * H), (starts[ri]! + t) * H);
            }
          });
        }
        const rows = request.rows.map((row, ri) => ({
          row,
          cache: caches[ri]!,
          start: starts[ri]!,
          // Token t of the row rotates by table row t; its heads are blocks of the stacked activations.
          queryHeads: Array.from({ length: numHeads }, (_, h) => ({ data: q, offset: starts[ri]! * qDim + h * headDim })),
          keyHeads: Array.from({ length: numKvHeads }, (_, kv) => ({ data: qkv, offset: starts[ri]! * qkvDim + qDim + kv * headDim })),
        }));

        for (let l = group.firstLayer; l < group.endLayer; l++) {
          request.signal?.throwIfAborted();
          const lw = w.layers[l]!;
          // The last layer's keys and values are all the cache needs of it: its attention and MLP
          // run only for the tokens whose logits were asked for (llama.cpp's output ids), so a
          // shadow chunk or a prompt's body stops at its QKV projection there.
          const final = l === c.numLayers - 1;
          rmsNorm(x, total, H, lw.inputNorm, eps, xn);
          pending = k.matmul(xn, total, lw.qkv, qkv);
          if (pending) await pending;
          for (const [ri, r] of rows.entries()) {
            const n = r.row.tokens.length;
            const past = r.cache.length;
            const keys = r.cache.keys(l);
            const values = r.cache.values(l);
            for (let t = 0; t < n; t++) copy(qkv, (r.start + t) * qkvDim, q, (r.start + t) * qDim, qDim);
            rotateBlocks(r.queryHeads, n, qDim, c.rope.pairing, tables[ri]!, tableRows[ri]!);
            rotateBlocks(r.keyHeads, n, qkvDim, c.rope.pairing, tables[ri]!, tableRows[ri]!);
            for (let t = 0; t < n; t++) {
              const src = (r.start + t) * qkvDim + qDim;
              for (let kv = 0; kv < numKvHeads; kv++) {
                const dst = r.cache.offset(kv, past + t);
                copy(qkv, src + kv * headDim, keys, dst, headDim);
                copy(qkv, src + kvDim + kv * headDim, values, dst, headDim);
              }
            }
            const skip = final ? n - (r.row.logits ?? 1) : 0;
            if (skip === n) continue;
            pending = k.attention(q, r.start + skip, n - skip, past + skip, keys, values, r.cache.capacity, numHeads, numKvHeads, headDim, attn);
            if (pending) await pending;
          }
          // From here on the last layer holds only the tokens with logits, stacked row by row.
          const active = final ? logitRows : total;
          if (final && active < total) compactOutputRows(rows, attn, qDim, x, H);
          if (active === 0) continue;
          pending = k.matmul(attn, active, lw.o, proj);
          if (pending) await pending;
          k.addInPlace(x, proj, active * H);
          rmsNorm(x, active, H, lw.postAttentionNorm, eps, xn);
          pending = k.matmul(xn, active, lw.gateUp, gateUp);
          if (pending) await pending;
          k.swiglu(gateUp, active, I, act);
          pending = k.matmul(act, active, lw.down, proj);
          if (pending) await pending;
          k.addInPlace(x, proj, active * H);
        }
        request.signal?.throwIfAborted();

        if (!last) {
          carried = x;
          continue;
        }
        // The rows asking for logits, stacked by the last layer: final norm, then one pass over the LM head for all.
        let at = 0;
        const spans = rows.map((r) => {
          const count = r.row.logits ?? 1;
          at += count;
          return { count, from: at - count };
        });
        if (logitRows > 0) {
          rmsNorm(x, logitRows, H, w.finalNorm, eps, hidden);
          pending = k.matmul(hidden, logitRows, w.lmHead, logits);
          if (pending) await pending;
        }
        const outputs: RowLogits[] = spans.map(({ count, from }) => ({
          count,
          vocabSize: c.vocabSize,
          data: logits.slice(from * c.vocabSize, (from + count) * c.vocabSize),
        }));
        // Every row succeeded: only now do the new rows become part of each cache.
        for (const [ri, r] of rows.entries()) r.cache.commit(r.row.tokens, r.row.positions, request.rows[ri]!.regime);
        return { rows: outputs };
      }
      throw new BackendError('no-groups', 'the reference backend has no layer groups');
    } finally {
      for (const b of temporary) b.free();
    }
  }

  /**
   * The activation blocks of group `g` for a forward of `total` tokens (`logitRows` of them with
   * logits, in the last group): kept from one forward to the next while forwards stay small (decode
   * steps and shadow chunks then allocate nothing), else allocated for this forward alone (added to
   * `temporary`, freed when it ends). Allocates: call before taking views of group g's memory.
   */
  private activationBlocks(g: number, total: number, logitRows: number, last: boolean, temporary: KvBlock[]): KvBlock[] {
    const storage = this.ops.groups[g]!.storage;
    const allocate = (tokens: number, logits: number) => activationSizes(this.config, tokens, last ? logits : 0).map((n) => storage.allocate(n));
    if (total > KEPT_ACTIVATION_TOKENS || logitRows > KEPT_ACTIVATION_TOKENS) {
      const blocks = allocate(total, logitRows);
      temporary.push(...blocks);
      return blocks;
    }
    const kept = this.kept[g];
    if (kept && kept.tokens >= total && kept.logitRows >= logitRows) return kept.blocks;
    // Grown to what this forward needs (at least what the kept blocks held), then kept.
    const tokens = Math.max(total, kept?.tokens ?? 0);
    const logits = Math.max(logitRows, kept?.logitRows ?? 0);
    const blocks = allocate(tokens, logits);
    for (const b of kept?.blocks ?? []) b.free();
    this.kept[g] = { tokens, logitRows: logits, blocks };
    return blocks;
  }

  /** A CPU cache these kernels can compute on (for the WebAssembly kernels: one of this backend's). */
  private asOwnCache(cache: KvCache): CpuKvCache {
    if (!(cache instanceof CpuKvCache) || !this.ops.accepts(cache)) {
      throw new BackendError('cache-type', `the reference backend (${this.kernels} kernels) needs caches made by its createCache()`);
    }
    return cache;
  }
}


/** Forwards of up to this many tokens (and logit rows) reuse one set of activation blocks per layer group. */
const KEPT_ACTIVATION_TOKENS = 64;

/** Floats of each activation of a forward of `total` tokens, `logitRows` of them with logits (0 outside the last group): x, xn, qkv, q, attn, proj, gateUp, act, hidden, logits. */
function activationSizes(c: ModelConfig, total: number, logitRows: number): number[] {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = c;
  const qDim = numHeads * headDim;
  const qkvDim = qDim + 2 * numKvHeads * headDim;
  return [total * H, total * H, total * qkvDim, total * qDim, total * qDim, total * H, total * 2 * I, total * I, logitRows * H, logitRows * vocabSize];
}

/**
 * Moves each row's tokens with logits (its last `logits`) to the front of the attention output and
 * of the hidden state, row after row, for the last layer's output projection and MLP. Rows only
 * move towards the front, so copying them in order never overwrites one still to be read.
 */
function compactOutputRows(rows: readonly { row: ForwardRequest['rows'][number]; start: number }[], attn: Float32Array, qDim: number, x: Float32Array, H: number): void {
  let at = 0;
  for (const { row, start } of rows) {
    const count = row.logits ?? 1;
    const first = start + row.tokens.length - count;
    if (count > 0 && first !== at) {
      attn.copyWithin(at * qDim, first * qDim, (first + count) * qDim);
      x.copyWithin(at * H, first * H, (first + count) * H);
    }
    at += count;
  }
}

/** `dst[to … to + n) = src[from … from + n)`: a head's floats, without the view `subarray` would make. */
function copy(src: Float32Array, from: number, dst: Float32Array, to: number, n: number): void {
  for (let i = 0; i < n; i++) dst[to + i] = src[from + i]!;
}
