import {
  type Backend,
  type BackendCapabilities,
  BackendError,
  type CpuKvCache,
  CpuRerotation,
  type Float16KvCache,
  type KvCacheDtype,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  type WeightStore,
  requireCpuCache,
  validateForwardRequest,
  type HostKvCache,
} from '@ropeswitch/core';
import * as ort from 'onnxruntime-node';
import { type CachedExport, cachedExport } from '../export/model-cache.js';
import { checkExecutionProvider, providerStartError } from './execution-provider.js';
import { type ExecutionProviderName, type OnnxRuntimeBackendOptions, resolveOptions } from './options.js';
import { DecoderRunner, createHostCache } from './decoder-runner.js';

/**
 * A Phi-3 / Llama-family decoder exported to ONNX and run by onnxruntime-node.
 *
 * The exported graph (see `DecoderIo`) takes the rotary cos/sin of the new tokens as inputs, so the
 * caller's regime is used as given, and takes the KV caches as inputs it never returns: a cache is
 * a {@link CpuKvCache} (`[kvHead][index][headDim]` per layer, capacity-sized `Float32Array`s; with
 * `cacheDtype: 'float16'` a `Float16KvCache` of binary16 bits, half the memory) whose
 * storage is handed to onnxruntime as tensors without a copy; the graph returns only the new rows'
 * keys and values, which this backend writes into the cache past its length and commits when every
 * row of the call has succeeded. A decode step therefore moves a few KiB, not the whole cache.
 *
 * All rows of a forward call share one session run (up to `rowsPerRun` rows; rows longer than
 * `prefillChunk` run in pieces over consecutive runs): the weights are read once for a decode row
 * and a shadow chunk together.
 */
export class OnnxRuntimeBackend implements Backend {
  readonly name = 'onnxruntime';
  readonly capabilities: BackendCapabilities;
  /** The exported model this backend runs (a folder under `cacheDir`), with its manifest. */
  readonly exported: CachedExport;
  /** The execution provider the session runs on. */
  readonly executionProvider: ExecutionProviderName;
  /** Element type of the caches this backend makes and takes (the `cacheDtype` option). */
  readonly cacheDtype: KvCacheDtype;
  private session: ort.InferenceSession | undefined;
  private readonly runner: DecoderRunner;
  private readonly rerotation: CpuRerotation;

  private constructor(
    readonly config: ModelConfig,
    session: ort.InferenceSession,
    exported: CachedExport,
    provider: ExecutionProviderName,
    settings: { anglePrecision: BackendCapabilities['anglePrecision']; prefillChunk: number; cacheDtype: KvCacheDtype },
  ) {
    this.session = session;
    this.exported = exported;
    this.executionProvider = provider;
    const { anglePrecision, cacheDtype } = settings;
    this.cacheDtype = cacheDtype;
    this.runner = new DecoderRunner(config, { slots: exported.manifest.slots, prefillChunk: settings.prefillChunk, anglePrecision, cacheDtype });
    this.capabilities = { cacheLocation: 'cpu', maxRows: Infinity, rerotateKeys: true, anglePrecision };
    this.rerotation = new CpuRerotation(config, { backendName: this.name, anglePrecision, cacheDtype });
  }

  /**
   * Exports `config` + `weights` to ONNX (or reuses the export cached on disk for the same config,
   * weights, export options and exporter version) and opens an onnxruntime session on it. The
   * export streams: each tensor is read, laid out (or quantized), written and dropped. `weights` is
   * only read during the call: the caller may close it once the promise settles.
   *
   * @throws BackendError `'bad-option'` for an invalid option, `'provider-unavailable'` when the
   * requested execution provider is missing here (with how to enable it), `'export-failed'` when
   * the cache folder cannot be written, `'session-failed'` when onnxruntime rejects the model.
   */
  static async open(config: ModelConfig, weights: WeightStore, options: OnnxRuntimeBackendOptions = {}): Promise<OnnxRuntimeBackend> {
    const provider = checkExecutionProvider(options.executionProvider ?? 'cpu');
    const o = resolveOptions(options);
    if (config.numHeads % config.numKvHeads !== 0) {
      throw new BackendError('unsupported-model', `${config.numHeads} query heads are not a multiple of ${config.numKvHeads} key/value heads`);
    }
    const exported = cachedExport(
      { config, slots: o.rowsPerRun, ...(o.quantization ? { quantization: o.quantization } : {}), ...(o.cacheDtype === 'float16' ? { cacheDtype: o.cacheDtype } : {}) },
      { weights, ...(options.checkpointDir !== undefined ? { checkpointDir: options.checkpointDir } : {}) },
      { ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
    );
    options.onProgress?.({ phase: 'load', bytesDone: 0, totalBytes: 0 });
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(exported.modelPath, {
        executionProviders: [provider],
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        interOpNumThreads: 1,
        ...(o.threads !== undefined ? { intraOpNumThreads: o.threads } : {}),
        ...options.sessionOptions,
      });
    } catch (cause) {
      if (provider !== 'cpu') throw providerStartError(provider, cause);
      throw new BackendError('session-failed', `onnxruntime cannot load the exported model ${exported.modelPath} (${String(cause)}); delete ${exported.dir} to export it again`, { cause });
    }
    return new OnnxRuntimeBackend(config, session, exported, provider, o);
  }

  /** An empty cache of the backend's `cacheDtype`: a {@link CpuKvCache}, or a {@link Float16KvCache}. */
  createCache(): HostKvCache {
    return createHostCache(this.config, this.cacheDtype);
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
    const caches = request.rows.map((row) => requireCpuCache(row.cache, this.name, this.cacheDtype));
    const window = this.config.slidingWindow;
    if (window !== undefined) {
      const longest = Math.max(...request.rows.map((row, i) => caches[i]!.length + row.tokens.length));
      if (longest > window) {
        throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${window}), which the onnxruntime backend does not implement`);
      }
    }
    return this.runner.forward(session, request, caches);
  }

  private live(): ort.InferenceSession {
    if (!this.session) throw new BackendError('disposed', 'the onnxruntime backend was disposed');
    return this.session;
  }
}

