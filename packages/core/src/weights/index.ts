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
} from './dtype.js';
export { MAX_HEADER_BYTES, openSafetensors, parseSafetensorsHeader, type SafetensorsEntry } from './safetensors-reader.js';
export { openSafetensorsBytes } from './safetensors-bytes.js';
export { encodeSafetensors, writeSafetensors, type TensorToWrite } from './safetensors-writer.js';
export { INDEX_FILE_NAME, SINGLE_FILE_NAME, loadWeights, type LoadProgress, type LoadWeightsOptions } from './load-weights.js';
export { storedBytes, type TensorInfo, type WeightStore } from './weight-store.js';
export { planSafetensors, tensorByteSize, type PlannedTensor, type SafetensorsLayout, type TensorSpec } from './safetensors-layout.js';
export type { OpenSafetensorsOptions } from './safetensors-reader.js';
export type { ReadListener } from './safetensors-store.js';
