import type { AnglePrecision } from '@ropeswitch/core';

/** Execution providers the backend can ask onnxruntime-node for. */
export type ExecutionProviderName = 'cpu' | 'cuda' | 'webgpu';

/** Options of {@link OnnxRuntimeBackend.open}. */
export interface OnnxRuntimeBackendOptions {
  /** Intra-op threads of the session (default: onnxruntime's choice, one per physical core). */
  readonly threads?: number;
  /** Where the graph runs (default `cpu`). `cuda` needs onnxruntime-node's CUDA binaries (see the README). */
  readonly executionProvider?: ExecutionProviderName;
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
  /**
   * Folder of exported models, one subfolder per (config, weights, exporter version) hash
   * (default `os.tmpdir()`): an export is written once and reused by every later open.
   */
  readonly cacheDir?: string;
  /**
   * New tokens per session call in a prefill (default 512): a longer row runs in chunks, each
   * attending to the rows before it, so the score matrix stays `chunk × cache` instead of `S × S`.
   */
  readonly prefillChunk?: number;
}
