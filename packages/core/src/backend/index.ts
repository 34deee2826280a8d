export type {
  Backend,
  BackendCapabilities,
  ForwardRequest,
  ForwardResult,
  ForwardRow,
  RowLogits,
} from './backend.js';
export { validateForwardRequest } from './validate-request.js';
export { validateForwardResult } from './validate-result.js';
export { type CpuRerotationOptions, CpuRerotation, type RotationKernel } from './cpu-rerotation.js';
export { type DecoderLayerWeights, type DecoderWeightSource, type DecoderWeights, readDecoderWeights } from './decoder-weights.js';
export { type RowRun, forwardRowByRow } from './forward-row-by-row.js';
export { requireCpuCache } from './require-cpu-cache.js';
