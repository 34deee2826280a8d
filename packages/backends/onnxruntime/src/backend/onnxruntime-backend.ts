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
  forwardRowByRow,
  requireCpuCache,
  rotaryTables,
  validateForwardRequest,
} from '@ropeswitch/core';
import * as ort from 'onnxruntime-node';
import { DecoderIo } from '../export/decoder-graph.js';
import { readExportWeights } from '../export/export-weights.js';
import { type CachedExport, cachedExport } from '../export/model-cache.js';
import { checkExecutionProvider, providerStartError } from './execution-provider.js';
import type { ExecutionProviderName, OnnxRuntimeBackendOptions } from './options.js';

const DEFAULT_PREFILL_CHUNK = 512;

/**
 * A Phi-3 / Llama-family decoder exported to ONNX and run by onnxruntime-node.
 *
 * The exported graph (see `DecoderIo`) takes the rotary cos/sin of the new tokens as inputs, so the
 * caller's regime is used as given, and takes the KV cache as inputs it never returns: the cache is
 * a {@link CpuKvCache} (`[kvHead][index][headDim]` per layer, capacity-sized `Float32Array`s) whose
 * storage is handed to onnxruntime as tensors without a copy; the graph returns only the new rows'
 * keys and values, which this backend writes into the cache past its length and commits when every
 * row of the call has succeeded. A decode step therefore moves a few KiB, not the whole cache.
 *
 * Rows of one forward call run one after another (one session call per row, or per prefill chunk).
 */
export class OnnxRuntimeBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly capabilities: BackendCapabilities;
  /** The exported model this backend runs (a folder under `cacheDir`). */
  readonly exported: CachedExport;
  /** The execution provider the session runs on. */
  readonly executionProvider: ExecutionProviderName;
  private session: ort.InferenceSession | undefined;
  private readonly prefillChunk: number;
  private readonly rerotation: CpuRerotation;
  /** A one-row cache stand-in for rows with nothing cached yet (fully masked: `past_length` 0). */
  private readonly emptyPast: ort.Tensor;

  private constructor(
    readonly config: ModelConfig,
    session: ort.InferenceSession,
    exported: CachedExport,
    provider: ExecutionProviderName,
    anglePrecision: AnglePrecision,
    prefillChunk: number,
  ) {
    this.session = session;
    this.exported = exported;
    this.executionProvider = provider;
    this.prefillChunk = prefillChunk;
    this.capabilities = { cacheLocation: 'cpu', maxRows: Infinity, rerotateKeys: true, anglePrecision };
    this.rerotation = new CpuRerotation(config, { backendName: this.name, anglePrecision });
    this.emptyPast = new ort.Tensor('float32', new Float32Array(config.numKvHeads * config.headDim), [config.numKvHeads, 1, config.headDim]);
  }

  /**
   * Exports `config` + `weights` to ONNX (or reuses the export cached on disk for the same config,
   * weights and exporter version) and opens an onnxruntime session on it. `weights` is only read
   * during the call: the caller may close it once the promise settles.
   *
   * @throws BackendError `'bad-option'` for an invalid option, `'provider-unavailable'` when the
   * requested execution provider is missing here (with how to enable it), `'session-failed'` when
   * onnxruntime rejects the model.
   */
  static async open(config: ModelConfig, weights: WeightStore, options: OnnxRuntimeBackendOptions = {}): Promise<OnnxRuntimeBackend> {
    const provider = checkExecutionProvider(options.executionProvider ?? 'cpu');
    const threads = options.threads;
    if (threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)) {
      throw new BackendError('bad-option', `threads must be a positive integer, got ${threads}`);
    }
    const anglePrecision = options.anglePrecision ?? 'float32';
    if (anglePrecision !== 'float32' && anglePrecision !== 'float64') {
      throw new BackendError('bad-option', `anglePrecision must be 'float32' or 'float64', got '${String(anglePrecision)}'`);
    }
    const prefillChunk = options.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
    if (!Number.isSafeInteger(prefillChunk) || prefillChunk < 1) {
      throw new BackendError('bad-option', `prefillChunk must be a positive integer, got ${prefillChunk}`);
    }
    if (config.numHeads % config.numKvHeads !== 0) {
      throw new BackendError('unsupported-model', `${config.numHeads} query heads are not a multiple of ${config.numKvHeads} key/value heads`);
    }
    const exported = cachedExport(config, readExportWeights(config, weights), options.cacheDir);
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(exported.modelPath, {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        interOpNumThreads: 1,
        ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
      });
    } catch (cause) {
      if (provider !== 'cpu') throw providerStartError(provider, cause);
      throw new BackendError('session-failed', `onnxruntime cannot load the exported model ${exported.modelPath} (${String(cause)}); delete ${exported.dir} to export it again`, { cause });
    }
    return new OnnxRuntimeBackend(config, session, exported, provider, anglePrecision, prefillChunk);
  }

  createCache(): CpuKvCache {
    const { numLayers, numKvHeads, headDim } = this.config;
    return new CpuKvCache({ numLayers, numKvHeads, headDim });
  }

  async rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    this.live();
    return this.rerotation.rerotateKeys(cache, to);
  }

  prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    return this.rerotation.prepareRerotation(from, to, positions);
  }

  async dispose(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    this.rerotation.clear();
    await s?.release();
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const session = this.live();
    validateForwardRequest(this.config, this.capabilities, request);
    const caches = request.rows.map((row) => requireCpuCache(row.cache, this.name));
    const window = this.config.slidingWindow;
    if (window !== undefined) {
      const longest = Math.max(...request.rows.map((row, i) => caches[i]!.length + row.tokens.length));
      if (longest > window) {
        throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${window}), which the onnxruntime backend does not implement`);
      }
    }
    return forwardRowByRow(request, async (row, i) => {
      const cache = caches[i]!;
      const logits = await this.runRow(session, row, cache, request.signal);
      return { logits: () => logits, commit: () => cache.commit(row.tokens, row.positions, row.regime) };
    });
  }

  /** Runs one row in chunks of at most `prefillChunk` tokens, writing its new keys/values past the cache's length (uncommitted). */
  private async runRow(session: ort.InferenceSession, row: ForwardRequest['rows'][number], cache: CpuKvCache, signal: AbortSignal | undefined): Promise<RowLogits> {
    const { numLayers, numKvHeads, headDim: D, vocabSize: V } = this.config;
    const n = row.tokens.length;
    const want = row.logits ?? 1;
    cache.reserve(n);
    const past = cache.length;
    const tables = rotaryTables(row.regime, row.positions, this.capabilities.anglePrecision);
    const half = tables.half;
    const ids = BigInt64Array.from(Array.from(row.tokens, (t) => BigInt(t)));
    const logits = new Float32Array(want * V);
    let logitsAt = 0;
    let scratch: { keys: Float32Array[]; values: Float32Array[] } | undefined;
    for (let start = 0; start < n; start += this.prefillChunk) {
      if (start > 0) signal?.throwIfAborted();
      const end = Math.min(n, start + this.prefillChunk);
      const S = end - start;
      const count = Math.max(0, end - Math.max(start, n - want));
      const valid = past + start;
      const cap = cache.capacity;
      const feeds: Record<string, ort.Tensor> = {
        [DecoderIo.inputIds]: new ort.Tensor('int64', ids.subarray(start, end), [S]),
        [DecoderIo.ropeCos]: new ort.Tensor('float32', tables.cos.subarray(start * half, end * half), [S, half]),
        [DecoderIo.ropeSin]: new ort.Tensor('float32', tables.sin.subarray(start * half, end * half), [S, half]),
        [DecoderIo.pastLength]: new ort.Tensor('int64', BigInt64Array.of(BigInt(valid)), [1]),
        [DecoderIo.logitsCount]: new ort.Tensor('int64', BigInt64Array.of(BigInt(count)), [1]),
      };
      // A prefill chunk scans every row of the tensors it gets: when the cache's capacity is well
      // past its valid rows (a long row reserved its full length up front), a compact copy of the
      // valid rows costs less than attending over the rest. Decode steps always get the cache itself.
      const compact = valid > 0 && S >= 16 && (cap - valid) * S > 4 * valid;
      scratch ??= compact ? this.allocScratch(past + n) : undefined;
      for (let l = 0; l < numLayers; l++) {
        if (valid === 0) {
          feeds[DecoderIo.pastKey(l)] = this.emptyPast;
          feeds[DecoderIo.pastValue(l)] = this.emptyPast;
        } else if (compact && scratch) {
          feeds[DecoderIo.pastKey(l)] = this.compactRows(cache, cache.keys(l), valid, scratch.keys[l]!);
          feeds[DecoderIo.pastValue(l)] = this.compactRows(cache, cache.values(l), valid, scratch.values[l]!);
        } else {
          // The cache's own storage, no copy; rows past `valid` are masked out by the graph.
          feeds[DecoderIo.pastKey(l)] = new ort.Tensor('float32', cache.keys(l), [numKvHeads, cap, D]);
          feeds[DecoderIo.pastValue(l)] = new ort.Tensor('float32', cache.values(l), [numKvHeads, cap, D]);
        }
      }
      const out = await session.run(feeds);
      for (let l = 0; l < numLayers; l++) {
        const k = out[DecoderIo.newKey(l)]!.data as Float32Array;
        const v = out[DecoderIo.newValue(l)]!.data as Float32Array;
        const keys = cache.keys(l);
        const values = cache.values(l);
        // New rows arrive as [kvHead][S][D]: one contiguous block per head in both layouts.
        for (let h = 0; h < numKvHeads; h++) {
          const at = cache.offset(h, valid);
          keys.set(k.subarray(h * S * D, (h + 1) * S * D), at);
          values.set(v.subarray(h * S * D, (h + 1) * S * D), at);
        }
      }
      if (count > 0) {
        logits.set((out[DecoderIo.logits]!.data as Float32Array).subarray(0, count * V), logitsAt);
        logitsAt += count * V;
      }
    }
    return { count: want, vocabSize: V, data: logits };
  }

  /** Per-layer buffers for compact copies of up to `rows` cached rows (a prefill's scratch). */
  private allocScratch(rows: number): { keys: Float32Array[]; values: Float32Array[] } {
    const { numLayers, numKvHeads, headDim } = this.config;
    const alloc = () => Array.from({ length: numLayers }, () => new Float32Array(numKvHeads * rows * headDim));
    return { keys: alloc(), values: alloc() };
  }

  /** Rows [0, `valid`) of every head of `layer` (`[kvHead][capacity][D]`) packed into `into` as `[kvHead][valid][D]`. */
  private compactRows(cache: CpuKvCache, layer: Float32Array, valid: number, into: Float32Array): ort.Tensor {
    const { numKvHeads, headDim: D } = this.config;
    for (let h = 0; h < numKvHeads; h++) {
      const from = cache.offset(h, 0);
      into.set(layer.subarray(from, from + valid * D), h * valid * D);
    }
    return new ort.Tensor('float32', into.subarray(0, numKvHeads * valid * D), [numKvHeads, valid, D]);
  }

  private live(): ort.InferenceSession {
    if (!this.session) throw new BackendError('disposed', 'the onnxruntime backend was disposed');
    return this.session;
  }
}

