import {
  type Backend,
  type BackendCapabilities,
  BackendError,
  CpuRerotation,
  type ForwardRequest,
  type ForwardResult,
  type HostKvCache,
  type KvBlockPoolStats,
  type KvCache,
  type KvCacheDtype,
  type ModelConfig,
  type RopeRegime,
  requireCpuCache,
  validateForwardRequest,
} from '@ropeswitch/core';
import type { InferenceSession } from 'onnxruntime-node';
import { DecoderRunner, type DecoderRunnerSettings, type HostBlockPool, createHostCache, hostBlockPool } from './decoder-runner.js';

/**
 * The part of a backend that runs a `DecoderRunner` graph on an onnxruntime session over
 * host caches, written once for `OnnxRuntimeBackend` (its own export) and `GenaiOnnxBackend` (a
 * rewritten onnxruntime-genai model): the session and its release, forward (live-session check,
 * request validation, each row's cache of the backend's element type, the runner), cache creation,
 * and in-place key rerotation on the CPU. A subclass adds how it opens its model and, through
 * {@link checkRows}, what else it refuses.
 */
export abstract class HostCacheOnnxBackend implements Backend {
  readonly capabilities: BackendCapabilities;
  /** Element type of the caches this backend makes and takes (the `cacheDtype` option). */
  readonly cacheDtype: KvCacheDtype;
  private session: InferenceSession | undefined;
  private readonly runner: DecoderRunner;
  private readonly rerotation: CpuRerotation;
  /** Every cache block this backend hands out, and its prefills' scratch, come from and go back to it. */
  private readonly pool: HostBlockPool;

  /**
   * @param name The backend's name, also in its errors (`the <name> backend was disposed`).
   * @param settings The runner's, and the bytes of the block pool its caches and scratch share (`cachePoolBytes`).
   */
  protected constructor(
    readonly name: string,
    readonly config: ModelConfig,
    session: InferenceSession,
    settings: DecoderRunnerSettings & { readonly cachePoolBytes: number },
  ) {
    const { anglePrecision, cacheDtype } = settings;
    this.session = session;
    this.cacheDtype = cacheDtype;
    this.pool = hostBlockPool(cacheDtype, settings.cachePoolBytes);
    this.runner = new DecoderRunner(config, settings, this.pool);
    this.capabilities = { cacheLocation: 'cpu', maxRows: Infinity, rerotateKeys: true, anglePrecision };
    this.rerotation = new CpuRerotation(config, { backendName: name, anglePrecision, cacheDtype });
  }

  /** What the backend's block pool (`cachePoolBytes`) has handed out again, made afresh, and holds now. */
  get cachePoolStats(): KvBlockPoolStats {
    return this.pool.stats;
  }

  /** An empty cache of the backend's `cacheDtype`: a `CpuKvCache`, or a `Float16KvCache`. */
  createCache(): HostKvCache {
    return createHostCache(this.config, this.cacheDtype, this.pool);
  }

  /**
   * Runs the request's rows in as few session runs as the graph's row slots allow.
   *
   * @throws BackendError `'disposed'` after {@link dispose}; what `validateForwardRequest`,
   * `requireCpuCache` and {@link checkRows} throw for a request this backend cannot run.
   */
  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const session = this.live();
    validateForwardRequest(this.config, this.capabilities, request);
    const caches = request.rows.map((row) => requireCpuCache(row.cache, this.name, this.cacheDtype));
    this.checkRows(request, caches);
    return this.runner.forward(session, request, caches);
  }

  /** Rotates every cached key of `cache` into `to`, in place, on the CPU. */
  async rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    this.live();
    return this.rerotation.rerotateKeys(cache, to);
  }

  prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    return this.rerotation.prepareRerotation(from, to, positions);
  }

  /** Releases the session and the prepared rerotation tables; later calls throw `'disposed'`. */
  async dispose(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.rerotation.clear();
    this.pool.close();
    await session?.release();
  }

  /**
   * What a subclass refuses beyond the common checks, once the request is valid and `caches[i]`
   * is row i's cache (default: nothing).
   */
  protected checkRows(_request: ForwardRequest, _caches: readonly HostKvCache[]): void {}

  private live(): InferenceSession {
    if (!this.session) throw new BackendError('disposed', `the ${this.name} backend was disposed`);
    return this.session;
  }
}
