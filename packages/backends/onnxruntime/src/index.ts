export { OnnxRuntimeBackend } from './backend/onnxruntime-backend.js';
export type { ExecutionProviderName, OnnxRuntimeBackendOptions } from './backend/options.js';
export { CUDA_HOWTO } from './backend/execution-provider.js';
export { DecoderIo, EXPORTER_VERSION, buildDecoderModel } from './export/decoder-graph.js';
export { type ExportLayerWeights, type ExportWeights, readExportWeights } from './export/export-weights.js';
export { type CachedExport, MODEL_FILE, cachedExport, exportKey } from './export/model-cache.js';
export * from './onnx/index.js';
export * from './genai/index.js';
