import {
  type BackendCapabilities,
  BackendError,
  type CpuKvCache,
  type Float16KvCache,
  type KvCacheDtype,
  type ForwardRequest,
  type ModelConfig,
  type WeightStore,
  type HostKvCache,
} from '@ropeswitch/core';
import * as ort from 'onnxruntime-node';
import { type CachedExport, cachedExport } from '../export/model-cache.js';
import { checkExecutionProvider, providerStartError } from './execution-provider.js';
import { type ExecutionProviderName, type OnnxRuntimeBackendOptions, resolveOptions } from './options.js';
import { HostCacheOnnxBackend } from './host-cache-onnx-backend.js';
import { exportSessionOptions } from './session-options.js';

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
export class OnnxRuntimeBackend extends HostCacheOnnxBackend {
  declare readonly name: 'onnxruntime';
  /** The exported model this backend runs (a folder under `cacheDir`), with its manifest. */
  readonly exported: CachedExport;
  /** The execution provider the session runs on. */
  readonly executionProvider: ExecutionProviderName;

  private constructor(
    config: ModelConfig,
    session: ort.InferenceSession,
    exported: CachedExport,
    provider: ExecutionProviderName,
    settings: { anglePrecision: BackendCapabilities['anglePrecision']; prefillChunk: number; cacheDtype: KvCacheDtype; cachePoolBytes: number },
  ) {
    const { anglePrecision, prefillChunk, cacheDtype, cachePoolBytes } = settings;
    super('onnxruntime', config, session, { slots: exported.manifest.slots, prefillChunk, anglePrecision, cacheDtype, cachePoolBytes });
    this.exported = exported;
    this.executionProvider = provider;
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
      session = await ort.InferenceSession.create(exported.modelPath, exportSessionOptions(o, provider, options.sessionOptions));
    } catch (cause) {
      if (provider !== 'cpu') throw providerStartError(provider, cause);
      throw new BackendError('session-failed', `onnxruntime cannot load the exported model ${exported.modelPath} (${String(cause)}); delete ${exported.dir} to export it again`, { cause });
    }
    return new OnnxRuntimeBackend(config, session, exported, provider, o);
  }

  /** Refuses sequences longer than the model's sliding window, which the graph does not implement. */
  protected override checkRows(request: ForwardRequest, caches: readonly HostKvCache[]): void {
    const window = this.config.slidingWindow;
    if (window !== undefined) {
      const longest = Math.max(...request.rows.map((row, i) => caches[i]!.length + row.tokens.length));
      if (longest > window) {
        throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${window}), which the onnxruntime backend does not implement`);
      }
    }
  }
}

