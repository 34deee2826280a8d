export { ReferenceBackend, type ReferenceBackendOptions } from './reference-backend.js';
export type { ReferenceKernels } from './kernels/decoder-kernels.js';
export { readDecoderWeights, type DecoderWeights, type LayerWeights } from './decoder-weights.js';
