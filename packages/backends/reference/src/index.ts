export { ReferenceBackend, type ReferenceBackendOptions } from './reference-backend.js';
export { readDecoderWeights, type DecoderWeights, type LayerWeights } from './decoder-weights.js';
