export { OnnxRuntimeBackend } from './backend/onnxruntime-backend.js';
export { HostCacheOnnxBackend } from './backend/host-cache-onnx-backend.js';
export type { ExecutionProviderName, OnnxRuntimeBackendOptions } from './backend/options.js';
export { CUDA_HOWTO } from './backend/execution-provider.js';
export { type RowPiece, type RunLimits, type RunPieces, forwardInRuns, planRuns, wantedLogits } from './backend/row-runs.js';
export { DEFAULT_ROW_SLOTS, type DecoderGraphOptions, DecoderIo, type DecoderModel, EXPORTER_VERSION, buildDecoderModel } from './export/decoder-graph.js';
export type { InitializerSink } from './export/graph-builder.js';
export type { ExportQuantization, QuantizationReport, QuantizationSettings } from './export/projections.js';
export { type QuantBits, type QuantizedMatrix, dequantize, quantizeBlockwise } from './export/quantize.js';
export { type ExportProgress, checkpointBytes } from './export/weight-source.js';
export {
  type CachedExport,
  type CachedExportOptions,
  DATA_FILE,
  type ExportManifest,
  type ExportSettings,
  type ExportSource,
  MANIFEST_FILE,
  MODEL_FILE,
  cachedExport,
  checkExport,
  contentDigest,
  exportKey,
  filesFingerprint,
  sampleDigest,
} from './export/model-cache.js';
export * from './onnx/index.js';
export * from './genai/index.js';
