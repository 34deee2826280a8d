/**
 * @packageDocumentation
 * ropeswitch core for browsers and workers: everything of the main entry that needs no file
 * system. Bundlers pick it through the `browser` export condition of `@ropeswitch/core` (so the
 * policies and backends, which import `@ropeswitch/core`, bundle for the web too); it is also the
 * `@ropeswitch/core/browser` subpath. Left out: `loadModelConfig`, `loadWeights`,
 * `openSafetensors`, `writeSafetensors`, `loadCheckpoint` and `loadTokenizer`, which read or write
 * files. In their place, parse what you fetched: `parseModelConfig(await (await fetch(url)).json())`
 * and {@link openSafetensorsBytes}`(await (await fetch(url)).arrayBuffer())`.
 */
export * from './errors.js';
export type { ModelConfig, ModelFamily, RopeConfig, RopePairing, RopeScaling, RopeType } from './config/model-config.js';
export { parseModelConfig } from './config/parse-config.js';
export { positionLimit } from './config/position-limit.js';
export {
  TENSOR_DTYPES,
  bf16BitsToF32,
  decodeTensor,
  decodeTensorInto,
  dtypeByteSize,
  encodeTensor,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  isTensorDtype,
  type TensorDtype,
} from './weights/dtype.js';
export { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsEntry } from './weights/safetensors-header.js';
export { openSafetensorsBytes } from './weights/safetensors-bytes.js';
export { storedBytes, type TensorInfo, type WeightStore } from './weights/weight-store.js';
export { planSafetensors, tensorByteSize, type PlannedTensor, type SafetensorsLayout, type TensorSpec } from './weights/safetensors-layout.js';
export * from './rope/index.js';
export * from './cache/index.js';
export * from './backend/index.js';
export type { TextTokenizer } from './tokenizer/text-tokenizer.js';
export { SeededRandom } from './random/seeded-random.js';
export * from './policy/index.js';
export * from './session/index.js';
