import { WEIGHT_DTYPES, type WeightDtype } from '@ropeswitch/backend-reference';
import { choice, intOption } from './args.js';

/**
 * Flags every command that opens a backend takes beside `--backend` / `--backends`. Each reaches
 * the backends that have the matching option and is ignored by the others (the report or the
 * backend's `deviceDescription` says what ran).
 */
export const BACKEND_FLAGS = {
  threads: { type: 'string' },
  quantize: { type: 'string' },
  weights: { type: 'string' },
  'cache-dtype': { type: 'string' },
  'rows-per-run': { type: 'string' },
} as const;

/** The backend flags as the commands' usage lines show them. */
/** The most row slots `--rows-per-run` takes (each slot is a copy of the attention in every layer of the export). */
export const MAX_ROWS_PER_RUN = 64;

export const BACKEND_FLAGS_USAGE = '[--threads N] [--quantize int4|int8] [--weights float32|bfloat16|float16|int8] [--cache-dtype float32|float16] [--rows-per-run N]';

/** Weight precisions `--quantize` takes (onnxruntime: `MatMulNBits` exports). */
export const QUANTIZE_MODES = ['int4', 'int8'] as const;

/** KV cache element types `--cache-dtype` takes (onnxruntime: `cacheDtype`). */
export const CACHE_DTYPES = ['float32', 'float16'] as const;

/** What {@link BACKEND_FLAGS} parse to. */
export interface BackendSettings {
  /** Compute threads (onnxruntime: `intraOpNumThreads`; reference: its worker pool, the calling thread included); absent: the backend's default. */
  readonly threads?: number;
  /** Quantized weights (onnxruntime: an int4 / int8 export); absent: float32. */
  readonly quantize?: (typeof QUANTIZE_MODES)[number];
  /** How the reference backend stores its weight matrices (`float32`, `bfloat16`, `float16`, `int8`); absent: float32. */
  readonly weights?: WeightDtype;
  /** Element type of the onnxruntime backend's KV caches (`float16`: half the memory); absent: float32. */
  readonly cacheDtype?: (typeof CACHE_DTYPES)[number];
  /** Row slots of one onnxruntime session run (`rowsPerRun`: a batch scheduler's 8 rows in one pass over the weights want 8); absent: 4. */
  readonly rowsPerRun?: number;
}

/** Parses the backend flags of a command line (`parseOptions` output). */
export function backendSettings(o: Readonly<Record<string, string | boolean | undefined>>): BackendSettings {
  return {
    ...(o.threads === undefined ? {} : { threads: intOption('threads', o.threads, 0, 1, 1024) }),
    ...(o.quantize === undefined ? {} : { quantize: choice('quantize', o.quantize, QUANTIZE_MODES, 'int4') }),
    ...(o.weights === undefined ? {} : { weights: choice('weights', o.weights, WEIGHT_DTYPES, 'float32') }),
    ...(o['cache-dtype'] === undefined ? {} : { cacheDtype: choice('cache-dtype', o['cache-dtype'], CACHE_DTYPES, 'float32') }),
    ...(o['rows-per-run'] === undefined ? {} : { rowsPerRun: intOption('rows-per-run', o['rows-per-run'], 4, 1, MAX_ROWS_PER_RUN) }),
  };
}
