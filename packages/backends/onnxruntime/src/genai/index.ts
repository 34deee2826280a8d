/**
 * Standard onnxruntime-genai decoder exports (e.g. `microsoft/Phi-3-mini-128k-instruct-onnx`):
 * the adapter that lifts their rotary tables to inputs, a backend over the adapted model, and a
 * writer of that layout (for tests and tiny models).
 */
export { GenaiOnnxBackend, type GenaiOnnxBackendOptions } from './genai-onnx-backend.js';
export { adaptGenaiModel, adaptGenaiModelFile, type GenaiAdaptation } from './adapt-genai-model.js';
export { rewriteGenaiAttention, type GenaiAttentionRewrite, type GenaiRewriteOptions } from './rewrite-genai-attention.js';
export { writeGenaiModel, type WriteGenaiModelOptions, type GenaiModelFiles } from './write-genai-model.js';
export { readGenaiConfig, type GenaiDecoderConfig } from './genai-config.js';
export type { GenaiIoNames, GenaiSessionOptions } from './genai-session.js';
