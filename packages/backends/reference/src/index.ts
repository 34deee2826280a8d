export { ReferenceBackend, type ReferenceBackendOptions } from './reference-backend.js';
export type { ReferenceKernels } from './kernels/decoder-kernels.js';
export { WEIGHT_DTYPES, type WeightDtype } from './kernels/weight-dtype.js';
export { readDecoderWeights, type DecoderWeights, type LayerWeights } from './decoder-weights.js';
