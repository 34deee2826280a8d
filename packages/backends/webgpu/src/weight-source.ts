import type { WeightStore } from '@ropeswitch/core';

/**
 * Where the backend reads its tensors from: core's `WeightStore` (from `loadCheckpoint`) or any
 * object with the same `get`/`has`, e.g. tensors a browser parsed from a fetched safetensors file.
 * `get` returns float32 data in the HF state-dict layout and may throw `WeightsError` on a shape
 * mismatch. Read once during `WebGpuBackend.create`; the caller may close it afterwards.
 */
export type WeightSource = Pick<WeightStore, 'get' | 'has'>;
