import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type AnglePrecision,
  type Backend,
  type BackendCapabilities,
  BackendError,
  ConfigError,
  CpuKvCache,
  CpuRerotation,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  WeightsError,
  forwardRowByRow,
  loadModelConfig,
  requireCpuCache,
  rotaryTables,
  validateForwardRequest,
} from '@ropeswitch/core';
import type { InferenceSession } from 'onnxruntime-node';
import { type GenaiAdaptation, adaptGenaiModel } from './adapt-genai-model.js';
import { type GenaiDecoderConfig, checkGenaiAgainstHf, readGenaiConfig } from './genai-config.js';
import { DataType } from '../onnx/onnx-namespace.js';
import { layerName } from './genai-layout.js';
import { type GenaiSessionOptions, type GenaiStepResult, createGenaiSession, runGenaiStep } from './genai-session.js';

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
}

/**
 * A backend over a standard onnxruntime-genai decoder export (e.g.
 * `microsoft/Phi-3-mini-128k-instruct-onnx`), adapted by {@link adaptGenaiModel} so that the
 * rotary tables are inputs: the caller's regime rotates every row, whatever its length.
 *
 * GroupQueryAttention rotates the token at cache index `t` with table row `t` (it derives positions
 * from `seqlens_k`), so each call feeds tables whose row `cache.length + j` holds the angles of the
 * row's position `positions[j]` under the row's regime, times its attention factor (float32 products
 * `Math.fround(p·ω)` as HF computes them): any position ids, any regime.
 *
 * The model runs with its native past → present contract, one sequence per session run (rows of a
 * request run one after another). Caches are {@link CpuKvCache}s holding the present tensors' rows;
 * a call appends to them only once every row has succeeded.
 */
export class GenaiOnnxBackend implements Backend {
  readonly name = 'onnxruntime-genai';
  readonly capabilities: BackendCapabilities;
  private session: InferenceSession | undefined;
  private readonly rerotation: CpuRerotation;

  private constructor(
    readonly config: ModelConfig,
    private readonly genai: GenaiDecoderConfig,
    session: InferenceSession,
    /** What the adapter removed and found (table names, r/2, attention attributes). */
    readonly adaptation: Omit<GenaiAdaptation, 'model'>,
    anglePrecision: AnglePrecision,
  ) {
    this.session = session;
    this.capabilities = { cacheLocation: 'cpu', maxRows: Infinity, rerotateKeys: true, anglePrecision };
    this.rerotation = new CpuRerotation(config, { backendName: this.name, anglePrecision });
  }

  /**
   * Opens an onnxruntime-genai model folder: reads `genai_config.json` (decoder file and I/O names),
   * the HF `config.json` (see {@link GenaiOnnxBackendOptions.config}), adapts the decoder in memory
   * and loads it with its external data (`<file>.onnx.data`) read from the folder, untouched.
   *
   * @throws ConfigError when `genai_config.json` or the HF config is missing, malformed, or they disagree.
   * @throws WeightsError when the decoder is not a rotary-GQA genai layout or disagrees with the config.
   * @throws BackendError when onnxruntime cannot load it.
   */
  static async open(modelDir: string, options: GenaiOnnxBackendOptions = {}): Promise<GenaiOnnxBackend> {
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
    const { model, ...adaptation } = adaptGenaiModel(bytes);
    checkAdaptation(adaptation, config, modelPath);
    checkInputs(adaptation, genai, modelPath);
    const session = await createGenaiSession(model, modelDir, options.sessionOptions);
    return new GenaiOnnxBackend(config, genai, session, adaptation, options.anglePrecision ?? 'float32');
  }

  createCache(): CpuKvCache {
    const { numLayers, numKvHeads, headDim } = this.config;
    return new CpuKvCache({ numLayers, numKvHeads, headDim });
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const session = this.session;
    if (!session) throw new BackendError('disposed', 'the onnxruntime-genai backend was disposed');
    validateForwardRequest(this.config, this.capabilities, request);
    const { numLayers, numKvHeads, headDim, vocabSize } = this.config;
    return forwardRowByRow(request, async (row, r) => {
      const cache = requireCpuCache(row.cache, this.name);
      const past = cache.length;
      const n = row.tokens.length;
      const result = await runGenaiStep(session, this.genai.names, this.config, {
        tokens: row.tokens,
        pastKeys: Array.from({ length: numLayers }, (_, l) => readPast(cache, cache.keys(l), past)),
        pastValues: Array.from({ length: numLayers }, (_, l) => readPast(cache, cache.values(l), past)),
        pastLength: past,
        rotary: this.tablesFor(row.regime, row.positions, past + n),
      });
      return {
        logits: () => {
          const count = row.logits ?? 1;
          const data = result.logits.slice((n - count) * vocabSize, n * vocabSize);
          for (let i = 0; i < data.length; i++) {
            if (!Number.isFinite(data[i]!)) throw new BackendError('non-finite-logits', `row ${r}: the model produced a non-finite logit`);
          }
          return { count, vocabSize, data };
        },
        commit: () => {
          cache.reserve(n);
          for (let l = 0; l < numLayers; l++) {
            writeNew(cache, cache.keys(l), result.presentKeys[l]!, past, n, result.totalLength, numKvHeads, headDim);
            writeNew(cache, cache.values(l), result.presentValues[l]!, past, n, result.totalLength, numKvHeads, headDim);
          }
          cache.commit(row.tokens, row.positions, row.regime);
        },
      };
    });
  }

  rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    return this.rerotation.rerotateKeys(cache, to);
  }

  prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    return this.rerotation.prepareRerotation(from, to, positions);
  }

  async dispose(): Promise<void> {
    const session = this.session;
    this.session = undefined;
    this.rerotation.clear();
    await session?.release();
  }

  /**
   * `[rows][r/2]` tables for one run: row `past + j` holds position `positions[j]` under `regime`
   * (rows below `past` are never read: cached keys are already rotated).
   */
  private tablesFor(regime: RopeRegime, positions: ArrayLike<number>, rows: number) {
    const t = rotaryTables(regime, positions, this.capabilities.anglePrecision);
    const past = rows - positions.length;
    const cos = new Float32Array(rows * t.half);
    const sin = new Float32Array(rows * t.half);
    cos.set(t.cos, past * t.half);
    sin.set(t.sin, past * t.half);
    return { cos, sin, rows, half: t.half };
  }
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

/** The adapted graph must rotate what the HF config says: r/2 columns, the same pairing, the same heads. */
function checkAdaptation(a: Omit<GenaiAdaptation, 'model'>, c: ModelConfig, path: string): void {
  const problems: string[] = [];
  if (a.rotaryHalf !== c.rope.rotaryDim / 2) problems.push(`rotary tables are ${a.rotaryHalf} wide, the config's rotary dim ${c.rope.rotaryDim} needs ${c.rope.rotaryDim / 2}`);
  if (a.attention.rotaryInterleaved !== (c.rope.pairing === 'interleaved')) problems.push(`rotary_interleaved=${a.attention.rotaryInterleaved ? 1 : 0} but the config pairs ${c.rope.pairing}`);
  if (a.attention.numHeads !== c.numHeads || a.attention.kvNumHeads !== c.numKvHeads) problems.push(`GroupQueryAttention has ${a.attention.numHeads}/${a.attention.kvNumHeads} heads, the config ${c.numHeads}/${c.numKvHeads}`);
  if (a.attention.layers !== c.numLayers) problems.push(`${a.attention.layers} attention layers, the config ${c.numLayers}`);
  if (problems.length > 0) throw new WeightsError('config-mismatch', `${path} does not match its HF config: ${problems.join('; ')}`, { file: path });
}

/** The backend feeds float32 ids, mask, caches and tables, nothing else: refuse other layouts up front. */
function checkInputs(a: Omit<GenaiAdaptation, 'model'>, genai: GenaiDecoderConfig, path: string): void {
  if (a.elemType !== DataType.FLOAT) {
    throw new WeightsError('unsupported-dtype', `${path} keeps its KV cache in ONNX element type ${a.elemType}; the genai backend runs float32 caches (the cpu / cpu-int4 builds), not the fp16 CUDA / DirectML ones`, { file: path });
  }
  const n = genai.names;
  const known = new Set([n.inputIds, n.attentionMask, a.cosCache, a.sinCache]);
  for (let l = 0; l < genai.numLayers; l++) known.add(layerName(n.pastKey, l)).add(layerName(n.pastValue, l));
  const extra = a.inputs.filter((i) => !known.has(i));
  const missing = [...known].filter((i) => !a.inputs.includes(i));
  if (extra.length > 0 || missing.length > 0) {
    throw new WeightsError('unsupported-layout', `${path}: unexpected graph inputs${extra.length ? ` ${extra.join(', ')}` : ''}${missing.length ? `; missing ${missing.join(', ')}` : ''} (expected ids, attention_mask, past key/values and the rotary tables)`, { file: path });
  }
}

/** Past of one layer as `[kvHead][pos][headDim]`, `past` positions (copied out of the cache's capacity-strided storage). */
function readPast(cache: CpuKvCache, data: Float32Array, past: number): Float32Array {
  const { numKvHeads, headDim } = cache.layout;
  const out = new Float32Array(numKvHeads * past * headDim);
  for (let h = 0; h < numKvHeads; h++) {
    const from = cache.offset(h, 0);
    out.set(data.subarray(from, from + past * headDim), h * past * headDim);
  }
  return out;
}

/** Copies present rows `past … past+n−1` (`[kvHead][total][headDim]`) into the cache past its length. */
function writeNew(cache: CpuKvCache, into: Float32Array, present: Float32Array, past: number, n: number, total: number, kvHeads: number, headDim: number): void {
  for (let h = 0; h < kvHeads; h++) {
    const from = (h * total + past) * headDim;
    into.set(present.subarray(from, from + n * headDim), cache.offset(h, past));
  }
}

