import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type AnglePrecision,
  BackendError,
  ConfigError,
  type CpuKvCache,
  type Float16KvCache,
  type KvCacheDtype,
  type ModelConfig,
  WeightsError,
  loadModelConfig,
} from '@ropeswitch/core';
import type { InferenceSession } from 'onnxruntime-node';
import { HostCacheOnnxBackend } from '../backend/host-cache-onnx-backend.js';
import { resolveCacheDtype, resolveCachePoolBytes } from '../backend/options.js';
import { checkGenaiAgainstHf, readGenaiConfig } from './genai-config.js';
import { type GenaiSessionOptions, createGenaiSession } from './genai-session.js';
import { type GenaiAttentionRewrite, rewriteGenaiAttention } from './rewrite-genai-attention.js';

/** Options of {@link GenaiOnnxBackend.open}. */
export interface GenaiOnnxBackendOptions {
  /**
   * The model's HF config, parsed. Needed for the rotary schedule (LongRoPE short/long factors,
   * attention factor, thresholds), which `genai_config.json` does not carry. Default: read
   * `config.json` from {@link hfConfigDir}.
   */
  readonly config?: ModelConfig;
  /** Folder holding the HF `config.json` (default: the model folder). */
  readonly hfConfigDir?: string;
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
  /** onnxruntime-node session options (threads, execution providers). Default: onnxruntime's. */
  readonly sessionOptions?: GenaiSessionOptions;
  /** Rows one session run carries (default 4), as `OnnxRuntimeBackend`'s `rowsPerRun`. */
  readonly rowsPerRun?: number;
  /** Tokens of one row per session run (default 512); longer rows run in pieces. */
  readonly prefillChunk?: number;
  /**
   * Element type of the caches (default `float32`): `float16` makes and takes core
   * `Float16KvCache`s, the size of the model's own float16 caches, as `OnnxRuntimeBackend`'s option.
   */
  readonly cacheDtype?: KvCacheDtype;
  /** Bytes of given-back cache blocks kept for reuse (default 1 GiB), as `OnnxRuntimeBackend`'s option. */
  readonly cachePoolBytes?: number;
}

/**
 * A backend over a standard onnxruntime-genai decoder export (e.g.
 * `microsoft/Phi-3-mini-128k-instruct-onnx`, int4 `MatMulNBits` and float16 builds included),
 * rewritten in memory by {@link rewriteGenaiAttention} to the exporter's graph contract: its
 * GroupQueryAttention becomes attention over caller-owned caches that are never copied (the graph
 * returns only the new rows), rotated with the caller's per-token cos/sin, and a request's rows
 * share one session run. It then runs exactly like `OnnxRuntimeBackend` (the same
 * `HostCacheOnnxBackend` and `DecoderRunner`): any position ids, any regime per row, a shadow
 * chunk beside its decode row.
 *
 * Caches are float32 {@link CpuKvCache}s by default, also for float16 models (their attention runs
 * in float32), or with `cacheDtype: 'float16'` {@link Float16KvCache}s (half the memory); appended
 * to only once every row of a call has succeeded; `rerotateKeys` rotates them in place.
 */
export class GenaiOnnxBackend extends HostCacheOnnxBackend {
  declare readonly name: 'onnxruntime-genai';

  private constructor(
    config: ModelConfig,
    session: InferenceSession,
    /** What the rewrite found and removed (heads, layers, element type, removed nodes). */
    readonly rewrite: Omit<GenaiAttentionRewrite, 'model'>,
    anglePrecision: AnglePrecision,
    prefillChunk: number,
    cacheDtype: KvCacheDtype,
    cachePoolBytes: number,
  ) {
    super('onnxruntime-genai', config, session, { slots: rewrite.slots, prefillChunk, anglePrecision, cacheDtype, cachePoolBytes });
  }

  /**
   * Opens an onnxruntime-genai model folder: reads `genai_config.json` (decoder file and I/O names),
   * the HF `config.json` (see {@link GenaiOnnxBackendOptions.config}), rewrites the decoder in memory
   * and loads it with its external data (`<file>.onnx.data`) read from the folder, untouched.
   *
   * @throws ConfigError when `genai_config.json` or the HF config is missing, malformed, or they disagree.
   * @throws WeightsError when the decoder is not a rotary-GQA genai layout or disagrees with the config.
   * @throws BackendError `'bad-option'` for an invalid option; when onnxruntime cannot load the model.
   */
  static async open(modelDir: string, options: GenaiOnnxBackendOptions = {}): Promise<GenaiOnnxBackend> {
    const slots = positiveOption('rowsPerRun', options.rowsPerRun, 4);
    const prefillChunk = positiveOption('prefillChunk', options.prefillChunk, 512);
    const cacheDtype = resolveCacheDtype(options.cacheDtype);
    const cachePoolBytes = resolveCachePoolBytes(options.cachePoolBytes);
    const genai = await readGenaiConfig(modelDir);
    const config = options.config ?? (await loadHfConfig(options.hfConfigDir ?? modelDir));
    checkGenaiAgainstHf(genai, config, join(modelDir, 'genai_config.json'));
    const modelPath = join(modelDir, genai.fileName);
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(modelPath));
    } catch (err) {
      throw new WeightsError('unreadable', `cannot read the decoder ${modelPath} named by genai_config.json: ${err instanceof Error ? err.message : String(err)}`, { file: modelPath, cause: err });
    }
    const { model, ...rewrite } = rewriteGenaiAttention(bytes, {
      slots,
      headDim: config.headDim,
      rotaryDim: config.rope.rotaryDim,
      maxPositions: config.maxPositionEmbeddings,
      names: genai.names,
      cacheDtype,
    });
    checkRewrite(rewrite, config, modelPath);
    const session = await createGenaiSession(model, modelDir, options.sessionOptions);
    return new GenaiOnnxBackend(config, session, rewrite, options.anglePrecision ?? 'float32', prefillChunk, cacheDtype, cachePoolBytes);
  }
}

function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw new BackendError('bad-option', `${name} must be a positive integer, got ${value}`);
  return value ?? fallback;
}

async function loadHfConfig(dir: string): Promise<ModelConfig> {
  try {
    return await loadModelConfig(dir);
  } catch (err) {
    if (err instanceof ConfigError && err.code === 'unreadable') {
      throw new ConfigError(
        'missing-hf-config',
        `${err.message}. The rotary schedule (LongRoPE short/long factors, original_max_position_embeddings, attention factor) comes from the model's HF config.json, which onnxruntime-genai folders do not include: download it from the source model (e.g. microsoft/Phi-3-mini-128k-instruct) into the folder, or pass hfConfigDir / config`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** The rewritten graph must have the heads, pairing and layers the HF config says. */
function checkRewrite(a: Omit<GenaiAttentionRewrite, 'model'>, c: ModelConfig, path: string): void {
  const problems: string[] = [];
  if (a.attention.rotaryInterleaved !== (c.rope.pairing === 'interleaved')) problems.push(`rotary_interleaved=${a.attention.rotaryInterleaved ? 1 : 0} but the config pairs ${c.rope.pairing}`);
  if (a.attention.numHeads !== c.numHeads || a.attention.kvNumHeads !== c.numKvHeads) problems.push(`GroupQueryAttention has ${a.attention.numHeads}/${a.attention.kvNumHeads} heads, the config ${c.numHeads}/${c.numKvHeads}`);
  if (a.attention.layers !== c.numLayers) problems.push(`${a.attention.layers} attention layers, the config ${c.numLayers}`);
  if (problems.length > 0) throw new WeightsError('config-mismatch', `${path} does not match its HF config: ${problems.join('; ')}`, { file: path });
}
