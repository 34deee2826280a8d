/**
 * One onnxruntime-node session over a genai-layout decoder (adapted or not) and one call of it for a
 * single sequence (batch 1). Tensor layouts are in `genai-layout.ts`.
 */
import * as ort from 'onnxruntime-node';
import { BackendError, f16BitsToF32, f32ToF16Bits } from '@ropeswitch/core';
import { COS_CACHE, SIN_CACHE, layerName } from './genai-layout.js';

/** I/O names as `genai_config.json` gives them (`%d` templates for the per-layer caches). */
export interface GenaiIoNames {
  /** Token ids input (`input_ids`). */
  readonly inputIds: string;
  /** Attention mask input (`attention_mask`): its sum and length give `seqlens_k` and `total_sequence_length`. */
  readonly attentionMask: string;
  /** Past key / value inputs, `%d` = layer (`past_key_values.%d.key`). */
  readonly pastKey: string;
  readonly pastValue: string;
  /** Logits output (`logits`). */
  readonly logits: string;
  /** Present key / value outputs, `%d` = layer (`present.%d.key`). */
  readonly presentKey: string;
  readonly presentValue: string;
}

/** Session options passed through to onnxruntime-node (threads, execution providers, …). */
export type GenaiSessionOptions = ort.InferenceSession.SessionOptions;

/**
 * Opens a session. `model` is a path, or the bytes of a model whose external data lives in
 * `externalDataDir` (onnxruntime resolves `external_data` locations against that folder).
 */
export async function createGenaiSession(
  model: string | Uint8Array,
  externalDataDir: string,
  options: GenaiSessionOptions = {},
): Promise<ort.InferenceSession> {
  const extra = {
    ...(options.extra ?? {}),
    session: { ...(((options.extra ?? {}) as { session?: object }).session ?? {}), model_external_initializers_file_folder_path: externalDataDir },
  };
  try {
    return typeof model === 'string'
      ? await ort.InferenceSession.create(model, options)
      : await ort.InferenceSession.create(model, { ...options, extra });
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new BackendError('session', `onnxruntime could not load the genai model (external data folder ${externalDataDir}): ${why}`, { cause: err });
  }
}

/** One sequence's inputs for one run. */
export interface GenaiStep {
  readonly tokens: ArrayLike<number>;
  /** Per layer, keys then values: `[kvHead][pos][headDim]` of the `pastLength` cached positions. */
  readonly pastKeys: readonly Float32Array[];
  readonly pastValues: readonly Float32Array[];
  readonly pastLength: number;
  /** `[row][r/2]` tables with at least `pastLength + tokens.length` rows (adapted models only). */
  readonly rotary?: { readonly cos: Float32Array; readonly sin: Float32Array; readonly rows: number; readonly half: number };
}

/** A run's outputs: logits `[pos][vocab]` of every new token and the present tensors per layer. */
export interface GenaiStepResult {
  readonly logits: Float32Array;
  readonly presentKeys: Float32Array[];
  readonly presentValues: Float32Array[];
  /** Cached positions in the present tensors (`pastLength + tokens.length`). */
  readonly totalLength: number;
}

/** Runs one sequence (batch 1) through `session`, the model's own past → present contract (float16 caches converted from and to float32). */
export async function runGenaiStep(
  session: ort.InferenceSession,
  names: GenaiIoNames,
  layout: { readonly numLayers: number; readonly numKvHeads: number; readonly headDim: number },
  step: GenaiStep,
): Promise<GenaiStepResult> {
  const n = step.tokens.length;
  const total = step.pastLength + n;
  const feeds: Record<string, ort.Tensor> = {
    [names.inputIds]: new ort.Tensor('int64', BigInt64Array.from(Array.from(step.tokens, (t) => BigInt(t))), [1, n]),
    [names.attentionMask]: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
  };
  const kvDims = [1, layout.numKvHeads, step.pastLength, layout.headDim];
  // float16 builds (GPU / web, q4f16) take and return float16 caches and logits: converted here.
  const half = session.inputMetadata.some((m) => m.name === layerName(names.pastKey, 0) && m.isTensor && m.type === 'float16');
  const tensor = (data: Float32Array, dims: number[]) => (half ? new ort.Tensor('float16', Uint16Array.from(data, (x) => f32ToF16Bits(x)), dims) : new ort.Tensor('float32', data, dims));
  for (let l = 0; l < layout.numLayers; l++) {
    feeds[layerName(names.pastKey, l)] = tensor(step.pastKeys[l]!, kvDims);
    feeds[layerName(names.pastValue, l)] = tensor(step.pastValues[l]!, kvDims);
  }
  if (step.rotary) {
    const { cos, sin, rows, half } = step.rotary;
    feeds[COS_CACHE] = new ort.Tensor('float32', cos, [rows, half]);
    feeds[SIN_CACHE] = new ort.Tensor('float32', sin, [rows, half]);
  }
  let out: ort.InferenceSession.OnnxValueMapType;
  try {
    out = await session.run(feeds);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new BackendError('run', `onnxruntime failed on a ${n}-token step over ${step.pastLength} cached positions: ${why}`, { cause: err });
  }
  const floats = (name: string): Float32Array => {
    const t = out[name];
    if (t?.type === 'float16') return Float32Array.from(t.data as Uint16Array, (h) => f16BitsToF32(h));
    if (!t || t.type !== 'float32') throw new BackendError('bad-output', `the genai model has no float32 or float16 output ${name}`);
    return t.data as Float32Array;
  };
  return {
    logits: floats(names.logits),
    presentKeys: Array.from({ length: layout.numLayers }, (_, l) => floats(layerName(names.presentKey, l))),
    presentValues: Array.from({ length: layout.numLayers }, (_, l) => floats(layerName(names.presentValue, l))),
    totalLength: total,
  };
}
