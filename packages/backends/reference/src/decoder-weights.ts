// The reader moved to core, shared with the onnxruntime exporter and genai writer; these names
// stay for this package's users.
export { readDecoderWeights, type DecoderWeights, type DecoderLayerWeights as LayerWeights } from '@ropeswitch/core';
