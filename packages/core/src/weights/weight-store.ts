/**
 * The read side of a checkpoint: a `WeightStore` decodes named tensors to float32 on demand.
 * `loadWeights` (`load-weights.ts`) opens one from an HF checkpoint directory.
 */

import { type TensorDtype, dtypeByteSize } from './dtype.js';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
}

export interface WeightStore {
  /** Names of every tensor, in file order (shards in file-name order). */
  readonly names: readonly string[];
  has(name: string): boolean;
  /** @throws WeightsError `'missing-tensor'` if absent. */
  info(name: string): TensorInfo;
  /**
   * Decodes one tensor to float32, reading only its bytes.
   * @throws WeightsError `'shape-mismatch'` if `expectedShape` is given and differs.
   */
  get(name: string, expectedShape?: readonly number[]): Float32Array;
  /** Releases file handles; later `get` calls fail with `'closed'`. */
  close(): Promise<void>;
}

/** Bytes a tensor takes in its file. */
export function storedBytes(info: TensorInfo): number {
  return info.shape.reduce((a, b) => a * b, 1) * dtypeByteSize(info.dtype);
}
