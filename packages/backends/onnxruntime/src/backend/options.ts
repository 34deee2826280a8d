import { type AnglePrecision, BackendError, type KvCacheDtype } from '@ropeswitch/core';
import type { InferenceSession } from 'onnxruntime-node';
import { DEFAULT_ROW_SLOTS } from '../export/decoder-graph.js';
import type { ExportQuantization, QuantizationSettings } from '../export/projections.js';
import type { ExportProgress } from '../export/weight-source.js';

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
   * Folder of exported models, one subfolder per (config, weights, export options, exporter
   * version) key (default `os.tmpdir()`): an export is written once and reused by every later open.
   */
  readonly cacheDir?: string;
  /**
   * The checkpoint folder `weights` were opened from (`loadCheckpoint(dir)`). With it, the export
   * cache key is the identity of the folder's weight files (names, sizes, modification times) and
   * the tensors' names, types and shapes: reopening reads no weight byte. Without it the key hashes
   * every tensor, which reads the whole checkpoint on each open.
   */
  readonly checkpointDir?: string;
  /**
   * Weight precision of the export: float32 (default, within 1e-4 of HF), or `'int4'` / `'int8'`:
   * the projections and the LM head as `MatMulNBits` blocks of 32 with a scale and zero point each
   * (the embedding stays float32, as in onnxruntime-genai's CPU builds). A matrix whose input dim is
   * not a multiple of 32 stays float32 (listed in `exported.manifest.quantization.fellBack`).
   */
  readonly quantize?: ExportQuantization;
  /**
   * `MatMulNBits`' `accuracy_level` of a quantized export (default 4): the precision onnxruntime
   * multiplies in. 4 quantizes the activations to int8 per block and multiplies in integers; 0
   * (or 1) dequantizes to float32. See the package README for what each costs and gains.
   */
  readonly accuracyLevel?: 0 | 1 | 2 | 3 | 4;
  /**
   * Rows one session run carries (default 4): a forward of at most that many rows, each at most
   * `prefillChunk` tokens, is one run over the weights. Part of the export (each is a graph slot).
   */
  readonly rowsPerRun?: number;
  /**
   * New tokens of one row per session run in a prefill (default 512): a longer row runs in pieces,
   * each attending to the rows before it, so the score matrix stays `chunk × cache` instead of `S × S`.
   */
  readonly prefillChunk?: number;
  /**
   * onnxruntime-node session options merged over the backend's (`graphOptimizationLevel: 'all'`,
   * sequential execution, one inter-op thread, `threads`): e.g. `{ enableCpuMemArena: false }`, which
   * returns a long prefill's activations to the system after each run instead of keeping them in
   * onnxruntime's arena (see the README's memory figures).
   */
  readonly sessionOptions?: InferenceSession.SessionOptions;
  /**
   * Whether onnxruntime repacks the weight matrices into its kernels' layout as the session loads
   * (its "prepacking"; default `true`, as onnxruntime does). `false` memory-maps the export's
   * weights as stored: a reopen reads no weight and keeps no second copy on the heap (a 32-layer
   * float32 Phi-3-mini reopens in 2.2 s instead of 27 s, and its export peaks at 1.25 GB instead of
   * 15.4 GB), for a decode step 1.22× slower at that size, and float32 rows of a mixed run within
   * 1.2e-5 of one row per run in the tests (1e-5 prepacked): unpacked, the matmul rounds by row count. Quantized
   * exports want it on: `MatMulNBits` runs on its repacked blocks. Set through onnxruntime's
   * `session.disable_prepacking`; a value for that entry in `sessionOptions.extra` wins.
   */
  readonly prepackWeights?: boolean;
  /**
   * Element type of the KV caches `createCache` makes and `forward` takes (default `float32`,
   * within 1e-4 of HF). `float16`: core `Float16KvCache`s, half the memory (a 32-layer Phi-3-mini
   * at 4096 tokens: 1.61 GB instead of 3.22 GB); the graph casts them to float32 for attention and
   * rounds new rows to float16 (a separate export: part of the cache key). See the README for what
   * it costs in accuracy and time.
   */
  readonly cacheDtype?: KvCacheDtype;
  /**
   * Bytes of given-back cache blocks the backend keeps to hand out again (default 1 GiB; 0 keeps
   * none). A fresh block's pages are mapped on first touch, which makes filling it about 7× dearer
   * than filling memory already touched: caches that come and go (prefix-cache clones, shadow copies,
   * finished sequences, a chunked prefill's compact copies) then cost page faults instead of copies.
   * The pool is emptied by `dispose()`, and keeps nothing given back after it; a reused block is zeroed past the rows its cache copies in.
   */
  readonly cachePoolBytes?: number;
  /** Follows a long open: hashing or exporting the weights, checking a cached export, loading the session. */
  readonly onProgress?: (progress: ExportProgress) => void;
}

const DEFAULT_PREFILL_CHUNK = 512;
/** Block size of quantized exports (onnxruntime-genai's int4 CPU builds use 32). */
const QUANT_BLOCK = 32;
/** `MatMulNBits` accuracy level 4 (int8 activations): 2–90× faster than level 0 on the CPU provider (see `QuantizationSettings`). */
const QUANT_ACCURACY_LEVEL = 4;

/** Options checked, with defaults filled in. */
export interface ResolvedOptions {
  readonly threads: number | undefined;
  readonly anglePrecision: AnglePrecision;
  readonly prefillChunk: number;
  readonly rowsPerRun: number;
  readonly quantization: QuantizationSettings | undefined;
  readonly cacheDtype: KvCacheDtype;
  readonly prepackWeights: boolean;
  readonly cachePoolBytes: number;
}

/**
 * Checks every option that needs no model (the execution provider is checked on its own).
 * @throws BackendError `'bad-option'` naming the option and the value.
 */
export function resolveOptions(options: OnnxRuntimeBackendOptions): ResolvedOptions {
  const positive = (name: string, v: number | undefined, fallback: number | undefined): number | undefined => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new BackendError('bad-option', `${name} must be a positive integer, got ${v}`);
    return v ?? fallback;
  };
  const anglePrecision = options.anglePrecision ?? 'float32';
  if (anglePrecision !== 'float32' && anglePrecision !== 'float64') {
    throw new BackendError('bad-option', `anglePrecision must be 'float32' or 'float64', got '${String(anglePrecision)}'`);
  }
  const q = options.quantize;
  if (q !== undefined && q !== 'int4' && q !== 'int8') throw new BackendError('bad-option', `quantize must be 'int4' or 'int8', got '${String(q)}'`);
  const level = options.accuracyLevel ?? QUANT_ACCURACY_LEVEL;
  if (![0, 1, 2, 3, 4].includes(level)) throw new BackendError('bad-option', `accuracyLevel must be 0, 1, 2, 3 or 4, got ${String(level)}`);
  const cacheDtype = resolveCacheDtype(options.cacheDtype);
  const prepack = options.prepackWeights;
  if (prepack !== undefined && typeof prepack !== 'boolean') throw new BackendError('bad-option', `prepackWeights must be true or false, got ${String(prepack)}`);
  return {
    cachePoolBytes: resolveCachePoolBytes(options.cachePoolBytes),
    prepackWeights: prepack ?? true,
    cacheDtype,
    threads: positive('threads', options.threads, undefined),
    anglePrecision,
    prefillChunk: positive('prefillChunk', options.prefillChunk, DEFAULT_PREFILL_CHUNK)!,
    rowsPerRun: positive('rowsPerRun', options.rowsPerRun, DEFAULT_ROW_SLOTS)!,
    quantization: q === undefined ? undefined : { mode: q, blockSize: QUANT_BLOCK, accuracyLevel: level },
  };
}

/**
 * `cacheDtype` checked (default `float32`), for both onnxruntime backends.
 * @throws BackendError `'bad-option'` for anything but `float32` / `float16`.
 */
export function resolveCacheDtype(value: KvCacheDtype | undefined): KvCacheDtype {
  const dtype = value ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new BackendError('bad-option', `cacheDtype must be 'float32' or 'float16', got '${String(dtype)}'`);
  return dtype;
}

/** Bytes of given-back cache blocks a backend keeps for reuse unless told otherwise (see `cachePoolBytes`). */
export const DEFAULT_CACHE_POOL_BYTES = 2 ** 30;

/**
 * `cachePoolBytes` checked (default {@link DEFAULT_CACHE_POOL_BYTES}), for both onnxruntime backends.
 * @throws BackendError `'bad-option'` for anything but a non-negative safe integer.
 */
export function resolveCachePoolBytes(value: number | undefined): number {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) throw new BackendError('bad-option', `cachePoolBytes must be a non-negative integer, got ${String(value)}`);
  return value ?? DEFAULT_CACHE_POOL_BYTES;
}
