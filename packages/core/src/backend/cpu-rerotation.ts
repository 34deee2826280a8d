import { type KvCache, type KvCacheDtype, rerotateCpuKeys } from '../cache/index.js';
import type { ModelConfig } from '../config/model-config.js';
import { positionLimit } from '../config/position-limit.js';
import { BackendError } from '../errors.js';
import { modelSchedule } from '../rope/create-schedule.js';
import type { AnglePrecision, RopeRegime } from '../rope/regime.js';
import { RerotationTableCache } from '../rope/rerotation-table-cache.js';
import type { rotateBlocks } from '../rope/rotate-blocks.js';
import { requireCpuCache } from './require-cpu-cache.js';

/** The kernel a backend rotates cached keys with, where its cache storage lives. */
export interface RotationKernel {
  /** Resolves once `rotateBlocks` can run (e.g. a WebAssembly module compiled). */
  ready?(): Promise<void>;
  /** The contract of core's `rotateBlocks`. */
  readonly rotateBlocks: typeof rotateBlocks;
}

/** Options of {@link CpuRerotation}. */
export interface CpuRerotationOptions {
  /** The backend's name, for error messages. */
  readonly backendName: string;
  readonly anglePrecision: AnglePrecision;
  /** Default: core's TypeScript `rotateBlocks`. */
  readonly kernel?: RotationKernel;
  /** The element type of the backend's caches (default `float32`); caches of the other type are refused. */
  readonly cacheDtype?: KvCacheDtype;
}

/**
 * `rerotateKeys` and `prepareRerotation` of a backend whose caches are {@link CpuKvCache}s, with
 * the checks every such backend makes. Rerotation cos/sin are kept per (from, to) move across
 * calls and can be prepared ahead; none are kept for schedules with a new regime at every step
 * (dynamic NTK), whose moves do not come back.
 */
export class CpuRerotation {
  private readonly tables: RerotationTableCache | undefined;

  constructor(
    private readonly config: ModelConfig,
    private readonly options: CpuRerotationOptions,
  ) {
    this.tables = modelSchedule(config.rope).changesEveryStep ? undefined : new RerotationTableCache();
  }

  /** A backend's `rerotateKeys`, on any CPU cache. */
  async rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    this.checkRegime(to);
    const c = requireCpuCache(cache, this.options.backendName, this.options.cacheDtype ?? 'float32');
    const { kernel, anglePrecision } = this.options;
    // Await only a kernel that needs it: the TypeScript rotation runs in the same tick as the checks.
    const ready = kernel?.ready?.();
    if (ready) await ready;
    rerotateCpuKeys(c, to, this.config.rope.pairing, anglePrecision, this.tables, kernel?.rotateBlocks);
  }

  /** A backend's `prepareRerotation`: the tables of keys at positions [0, `positions`). */
  async prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    this.checkRegime(from);
    this.checkRegime(to);
    const limit = positionLimit(this.config);
    if (!Number.isSafeInteger(positions) || positions < 0 || positions > limit) {
      throw new BackendError('bad-positions', `cannot prepare rerotation tables for ${positions} positions: an integer in [0, ${limit}] (the model's position limit) is needed`);
    }
    this.tables?.prepare(from, to, positions, this.options.anglePrecision);
  }

  /** Drops the tables kept so far (the backend's `dispose`). */
  clear(): void {
    this.tables?.clear();
  }

  private checkRegime(regime: RopeRegime): void {
    const pairs = this.config.rope.rotaryDim / 2;
    if (regime.invFreq.length !== pairs) {
      throw new BackendError('regime-size', `regime ${regime.id} has ${regime.invFreq.length} frequencies; the model rotates ${pairs} pairs`);
    }
  }
}
