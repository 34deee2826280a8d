/**
 * HF `config.json` → {@link ModelConfig}: every field the library reads is checked here, once,
 * so that the rest of the code can trust the numbers (HF transformers 4.45 semantics, plus the
 * newer `rope_parameters` layout).
 */
import { ConfigError } from '../errors.js';
import { yarnCorrectionDim } from '../rope/static-frequencies.js';
import type { ModelConfig, ModelFamily, RopeConfig, RopePairing, RopeScaling } from './model-config.js';

/** `model_type` → weight layout. */
const FAMILIES: Readonly<Record<string, ModelFamily>> = {
  phi3: 'phi3',
  llama: 'llama',
  mistral: 'llama',
  qwen2: 'llama',
};

const ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'llama3', 'longrope', 'su'] as const;

/** How a value looks in a message: short, and never the whole of a large array or object. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length} entries`;
  switch (typeof value) {
    case 'string':
      return value.length > 40 ? `the string ${JSON.stringify(value.slice(0, 40))}…` : `the string ${JSON.stringify(value)}`;
    case 'number':
    case 'boolean':
      return String(value);
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}

function isRecord(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Largest head dimension accepted (real models use 64 to 256). */
const MAX_HEAD_DIM = 65536;

/** Positive safe integer: also bounds sizes read from the file (1e308 is an "integer" to JS). */
const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const isPosNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
/**
 * Per-pair rescale factors and attention factors are used in float32 (`1 / (λ · b^(2i/r))`, keys
 * scaled by the attention factor): outside the normal float32 range a reciprocal overflows to
 * Infinity or a scale rounds to 0 or Infinity, and angles or keys turn NaN downstream.
 */
const isF32Scale = (v: unknown): v is number => typeof v === 'number' && v >= 2 ** -126 && v <= 3.4028234663852886e38;
const F32_SCALE = 'a positive finite number in the normal float32 range [2^-126, 3.4e38]';

/** Typed access to one JSON object, with errors that name `source` and the field's JSON path. */
class Fields {
  constructor(
    readonly obj: Readonly<Record<string, unknown>>,
    /** JSON path of `obj` (`''` at the top level, `'rope_scaling'` below it). */
    readonly path: string,
    readonly source: string,
  ) {}

  field(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  /** Own properties only (a JSON `"__proto__"` or `"toString"` key must not reach the prototype); `null` counts as absent, as in HF. */
  raw(key: string): unknown {
    const v = Object.hasOwn(this.obj, key) ? this.obj[key] : undefined;
    return v === null ? undefined : v;
  }

  invalid(field: string, value: unknown, expected: string): never {
    throw new ConfigError('invalid-field', `${this.source}: ${field} is ${describe(value)}, expected ${expected}`, { field });
  }

  missing(key: string, expected: string): never {
    const field = this.field(key);
    throw new ConfigError('missing-field', `${this.source}: ${field} is missing, expected ${expected}`, { field });
  }

  private checked<T>(key: string, ok: (v: unknown) => v is T, expected: string): T | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!ok(v)) this.invalid(this.field(key), v, expected);
    return v;
  }

  optInt(key: string): number | undefined {
    return this.checked(key, isPosInt, 'a positive integer');
  }
  int(key: string): number {
    return this.optInt(key) ?? this.missing(key, 'a positive integer');
  }
  optNum(key: string): number | undefined {
    return this.checked(key, isPosNum, 'a positive finite number');
  }
  /** A finite number for which `ok` holds (e.g. a scaling `factor` ≥ 1), or absent. */
  optNumWhere(key: string, ok: (v: number) => boolean, expected: string): number | undefined {
    return this.checked(key, (v): v is number => typeof v === 'number' && Number.isFinite(v) && ok(v), expected);
  }
  /** An attention factor or mscale, or absent. */
  optScale(key: string): number | undefined {
    return this.checked(key, isF32Scale, F32_SCALE);
  }
  /** A scaling `factor`: HF documents it as a float ≥ 1 (below 1, yarn's attention factor and dynamic NTK's position limit degenerate). */
  scalingFactor(): number {
    return this.optNumWhere('factor', (v) => v >= 1, 'a finite number ≥ 1') ?? this.missing('factor', 'a finite number ≥ 1');
  }
  num(key: string): number {
    return this.optNum(key) ?? this.missing(key, 'a positive finite number');
  }
  optBool(key: string): boolean | undefined {
    return this.checked(key, (v): v is boolean => typeof v === 'boolean', 'true or false');
  }
  optString(key: string): string | undefined {
    return this.checked(key, (v): v is string => typeof v === 'string', 'a string');
  }
  optObject(key: string): Fields | undefined {
    const v = this.checked(key, isRecord, 'an object or null');
    return v === undefined ? undefined : new Fields(v, this.field(key), this.source);
  }

  /** A token id (non-negative integer) or absent. */
  optTokenId(key: string): number | undefined {
    return this.checked(key, isTokenId, 'a non-negative integer or null');
  }

  /** HF allows `eos_token_id` to be one id or a list of ids. */
  tokenIds(key: string): readonly number[] {
    const v = this.raw(key);
    if (v === undefined) return [];
    if (isTokenId(v)) return [v];
    if (!Array.isArray(v)) this.invalid(this.field(key), v, 'a non-negative integer, a list of them, or null');
    v.forEach((id, i) => {
      if (!isTokenId(id)) this.invalid(`${this.field(key)}[${i}]`, id, 'a non-negative integer');
    });
    return v as number[];
  }

  /** A per-pair factor list: exactly `rotaryDim / 2` positive finite numbers. */
  factors(key: string, rotaryDim: number): readonly number[] {
    const field = this.field(key);
    const v = this.raw(key);
    const expected = `a list of ${rotaryDim / 2} positive numbers (rotary_dim/2 = ${rotaryDim}/2)`;
    if (v === undefined) this.missing(key, expected);
    if (!Array.isArray(v)) this.invalid(field, v, expected);
    if (v.length !== rotaryDim / 2) {
      throw new ConfigError(
        'invalid-field',
        `${this.source}: ${field} has ${v.length} entries, expected ${rotaryDim / 2} (rotary_dim/2 = ${rotaryDim}/2)`,
        { field },
      );
    }
    v.forEach((x, i) => {
      if (!isF32Scale(x)) this.invalid(`${field}[${i}]`, x, F32_SCALE);
    });
    return Object.freeze([...(v as number[])]);
  }
}

const isTokenId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Validates an HF `config.json` and returns the typed view every other module reads.
 *
 * @param json the parsed JSON value, or its text (parsed here; a syntax error is a `malformed-json` ConfigError).
 * @param source what to call the file in messages (e.g. its path).
 * @throws ConfigError — and nothing else — for any input that cannot be used.
 */
export function parseModelConfig(json: unknown, source = 'config.json'): ModelConfig {
  try {
    return parseValue(json, source);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // A bug here must still surface as a ConfigError: callers rely on one error type for bad configs.
    throw new ConfigError('invalid-config', `${source}: cannot be parsed: ${String(err)}`, { cause: err });
  }
}

function parseValue(json: unknown, source: string): ModelConfig {
  let value = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json) as unknown;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ConfigError('malformed-json', `${source}: not valid JSON (${why})`, { cause: err });
    }
  }
  if (!isRecord(value)) {
    throw new ConfigError('invalid-field', `${source}: the top level is ${describe(value)}, expected a JSON object`);
  }
  const c: Fields = new Fields(value, '', source);

  const modelType = c.optString('model_type') ?? c.missing('model_type', `one of ${Object.keys(FAMILIES).join(', ')}`);
  const family = Object.hasOwn(FAMILIES, modelType) ? FAMILIES[modelType] : undefined;
  if (family === undefined) {
    throw new ConfigError(
      'unsupported-model',
      `${source}: model_type is ${JSON.stringify(modelType.slice(0, 40))}, expected one of ${Object.keys(FAMILIES).join(', ')}`,
      { field: 'model_type' },
    );
  }

  // The sizes every other module indexes by: all positive safe integers.
  const vocabSize = c.int('vocab_size');
  const hiddenSize = c.int('hidden_size');
  const intermediateSize = c.int('intermediate_size');
  const numLayers = c.int('num_hidden_layers');
  const numHeads = c.int('num_attention_heads');
  const numKvHeads = c.optInt('num_key_value_heads') ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    c.invalid('num_key_value_heads', numKvHeads, `a divisor of num_attention_heads (${numHeads})`);
  }
  const headDim = c.optInt('head_dim') ?? hiddenSize / numHeads;
  if (!Number.isInteger(headDim)) {
    c.invalid('num_attention_heads', numHeads, `a divisor of hidden_size (${hiddenSize}) when head_dim is absent`);
  }
  // The RoPE tables are sized by head_dim alone (no weight shape bounds them): real models use ≤ 256.
  if (headDim > MAX_HEAD_DIM) {
    if (c.raw('head_dim') !== undefined) c.invalid('head_dim', headDim, `a positive integer ≤ ${MAX_HEAD_DIM}`);
    c.invalid('hidden_size', hiddenSize, `at most ${MAX_HEAD_DIM} × num_attention_heads (${numHeads}) when head_dim is absent`);
  }
  const maxPositionEmbeddings = c.int('max_position_embeddings');
  const originalMaxPositionEmbeddings = c.optInt('original_max_position_embeddings');

  // qwen2 always has q/k/v biases; phi3 never; llama (and mistral exports that copy it) say so.
  const attentionBias = modelType === 'qwen2' ? true : family === 'phi3' ? false : (c.optBool('attention_bias') ?? false);
  // qwen2 writes a `sliding_window` even when it is switched off by `use_sliding_window`.
  const slidingWindow = modelType === 'qwen2' && c.optBool('use_sliding_window') !== true ? undefined : c.optInt('sliding_window');

  const config: ModelConfig = {
    modelType,
    family,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    // HF defaults: Phi3Config 1e-5, the Llama-family configs 1e-6.
    rmsNormEps: c.optNum('rms_norm_eps') ?? (family === 'phi3' ? 1e-5 : 1e-6),
    maxPositionEmbeddings,
    originalMaxPositionEmbeddings,
    tieWordEmbeddings: c.optBool('tie_word_embeddings') ?? false,
    attentionBias,
    mlpBias: c.optBool('mlp_bias') ?? false,
    slidingWindow,
    bosTokenId: c.optTokenId('bos_token_id'),
    eosTokenIds: Object.freeze([...c.tokenIds('eos_token_id')]),
    rope: parseRope(c, headDim, maxPositionEmbeddings, originalMaxPositionEmbeddings),
    // Newer HF writes `dtype` instead of `torch_dtype`; informational only, so any string goes.
    torchDtype: c.optString('torch_dtype') ?? c.optString('dtype'),
  };
  return Object.freeze(config);
}

function parseRope(
  c: Fields,
  headDim: number,
  maxPositionEmbeddings: number,
  topOriginalMax: number | undefined,
): RopeConfig {
  // The newer `rope_parameters` supersedes `rope_scaling` and may carry theta / partial factor too.
  const params = c.optObject('rope_parameters');
  const scaling = params ?? c.optObject('rope_scaling');

  const thetaFrom: Fields = params?.raw('rope_theta') !== undefined ? params : c;
  // b ≤ 1 is no geometric frequency ladder, and yarn divides by ln b: HF would divide by zero at b = 1.
  const theta = thetaFrom.optNumWhere('rope_theta', (v) => v > 1, 'a finite number > 1') ?? 10000;

  const prfFrom: Fields = params?.raw('partial_rotary_factor') !== undefined ? params : c;
  const prfField = prfFrom.field('partial_rotary_factor');
  const prfRaw = prfFrom.raw('partial_rotary_factor');
  let partialRotaryFactor = 1;
  if (prfRaw !== undefined) {
    if (!isPosNum(prfRaw) || prfRaw > 1) prfFrom.invalid(prfField, prfRaw, 'a number in (0, 1]');
    partialRotaryFactor = prfRaw;
  }
  const rotaryDim = Math.floor(headDim * partialRotaryFactor);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    const expected = `a value giving an even rotary dim >= 2 (floor(head_dim ${headDim} × ${partialRotaryFactor}) = ${rotaryDim})`;
    if (prfRaw !== undefined) prfFrom.invalid(prfField, prfRaw, expected);
    c.invalid('head_dim', headDim, `an even number >= 2 (it is the rotary dim when partial_rotary_factor is 1)`);
  }

  // Not an HF field: a way to describe GPT-J style checkpoints with the same loader.
  const interleaved = scaling?.optBool('interleaved') ?? c.optBool('rope_interleaved') ?? false;
  const pairing: RopePairing = interleaved ? 'interleaved' : 'rotate-half';

  return Object.freeze({
    theta,
    partialRotaryFactor,
    rotaryDim,
    pairing,
    scaling: Object.freeze(parseScaling(c, scaling, params !== undefined, theta, rotaryDim, maxPositionEmbeddings, topOriginalMax)),
  });
}

function parseScaling(
  top: Fields,
  s: Fields | undefined,
  isParameters: boolean,
  theta: number,
  rotaryDim: number,
  maxPositionEmbeddings: number,
  topOriginalMax: number | undefined,
): RopeScaling {
  if (s === undefined) return { type: 'default' };
  // HF reads `rope_type` first and falls back to the legacy `type`.
  const typeKey = s.raw('rope_type') !== undefined ? 'rope_type' : 'type';
  const known = `one of ${ROPE_TYPES.join(', ')}`;
  // `rope_parameters` always exists in newer configs, defaulting to plain RoPE; an untyped `rope_scaling` is an error in HF.
  const type = s.optString(typeKey) ?? (isParameters ? 'default' : s.missing(typeKey, known));

  switch (type) {
    case 'default':
      return { type };
    case 'linear':
      return { type, factor: s.scalingFactor() };
    case 'dynamic':
      return {
        type,
        factor: s.scalingFactor(),
        // HF 4.45 uses max_position_embeddings; newer HF prefers an explicit original length.
        originalMaxPositionEmbeddings: s.optInt('original_max_position_embeddings') ?? topOriginalMax ?? maxPositionEmbeddings,
      };
    case 'yarn': {
      const factor = s.scalingFactor();
      const originalMaxPositionEmbeddings = s.optInt('original_max_position_embeddings') ?? topOriginalMax ?? maxPositionEmbeddings;
      // The ramp runs between the correction dims of beta_fast and beta_slow, ln(L / (β·2π)) scaled:
      // a β so small that the quotient overflows (5e-324) or so large that it underflows to 0 makes
      // that dim infinite, the ramp (i − ∞)/(high − ∞) NaN, and HF raise (math.floor(inf), math.log(0)).
      const beta = (key: 'beta_fast' | 'beta_slow', fallback: number): number => {
        const v = s.optNum(key) ?? fallback;
        if (!Number.isFinite(yarnCorrectionDim(v, rotaryDim, theta, originalMaxPositionEmbeddings))) {
          s.invalid(
            s.field(key),
            v,
            `a positive number with original_max_position_embeddings / (${key} · 2π) finite and non-zero ` +
              `(original_max_position_embeddings = ${originalMaxPositionEmbeddings})`,
          );
        }
        return v;
      };
      const attentionFactor = s.optScale('attention_factor');
      return {
        type,
        factor,
        originalMaxPositionEmbeddings,
        attentionFactor,
        betaFast: beta('beta_fast', 32),
        betaSlow: beta('beta_slow', 1),
      };
    }
    case 'llama3': {
      const lowFreqFactor = s.num('low_freq_factor');
      const highFreqFactor = s.num('high_freq_factor');
      if (highFreqFactor <= lowFreqFactor) {
        s.invalid(s.field('high_freq_factor'), highFreqFactor, `a value greater than low_freq_factor (${lowFreqFactor})`);
      }
      return {
        type,
        factor: s.scalingFactor(),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings: s.int('original_max_position_embeddings'),
      };
    }
    case 'longrope':
    case 'su': {
      const shortFactor = s.factors('short_factor', rotaryDim);
      const longFactor = s.factors('long_factor', rotaryDim);
      // Phi-3 exports put L at the top level; `rope_parameters` configs put it inside.
      const innerOriginalMax = s.optInt('original_max_position_embeddings');
      const originalMaxPositionEmbeddings =
        topOriginalMax ??
        innerOriginalMax ??
        s.missing('original_max_position_embeddings', 'a positive integer (here or at the top level) for longrope');
      if (originalMaxPositionEmbeddings < 2) {
        // The default attention factor divides by ln L (HF raises ZeroDivisionError at L = 1).
        const field = topOriginalMax !== undefined ? 'original_max_position_embeddings' : s.field('original_max_position_embeddings');
        s.invalid(field, originalMaxPositionEmbeddings, 'an integer ≥ 2 for longrope');
      }
      return {
        type: 'longrope',
        shortFactor,
        longFactor,
        originalMaxPositionEmbeddings,
        maxPositionEmbeddings,
        attentionFactor: s.optScale('attention_factor'),
        factor: s.optNum('factor'),
        // Some exports write the regime-specific mscales at the top level rather than inside rope_scaling.
        shortMscale: s.optScale('short_mscale') ?? top.optScale('short_mscale'),
        longMscale: s.optScale('long_mscale') ?? top.optScale('long_mscale'),
      };
    }
    default:
      throw new ConfigError('unknown-rope-type', `${s.source}: ${s.field(typeKey)} is ${describe(type)}, expected ${known}`, {
        field: s.field(typeKey),
      });
  }
}
