/**
 * Names of the onnxruntime-genai model builder's decoder layout (`microsoft/onnxruntime-genai`,
 * `src/python/py/models/builders/base.py`), shared by the writer, the adapter and the backend.
 *
 * Tensor layouts, once:
 * - `input_ids` int64 `[batch, sequence]`; `attention_mask` int64 `[batch, total]` (ones here).
 * - `past_key_values.{i}.key|value` and `present.{i}.key|value` float32 `[batch][kvHead][pos][headDim]`.
 * - `logits` float32 `[batch][sequence][vocab]`.
 * - `cos_cache` / `sin_cache` float32 `[row][r/2]`: GroupQueryAttention rotates the token at cache
 *   index t (it derives t from `seqlens_k`: past length + j) with row t, both already multiplied by
 *   the attention factor.
 */

export const INPUT_IDS = 'input_ids';
export const ATTENTION_MASK = 'attention_mask';
export const LOGITS = 'logits';
export const COS_CACHE = 'cos_cache';
export const SIN_CACHE = 'sin_cache';
/** The external data file the builder writes beside `model.onnx` (`<model file name>.data`). */
export const dataFileFor = (modelFile: string): string => `${modelFile}.data`;

/** `past_key_values.%d.key` style templates, as `genai_config.json` states them. */
export const PAST_KEY_TEMPLATE = 'past_key_values.%d.key';
export const PAST_VALUE_TEMPLATE = 'past_key_values.%d.value';
export const PRESENT_KEY_TEMPLATE = 'present.%d.key';
export const PRESENT_VALUE_TEMPLATE = 'present.%d.value';

/** Fills a `%d` template with a layer index. */
export function layerName(template: string, layer: number): string {
  return template.replace('%d', String(layer));
}

/** Where the builder's attention-mask subgraph and rotary-cache switch live (node-name prefixes). */
export const MASK_SUBGRAPH = '/model/attn_mask_reformat/attn_mask_subgraph';
export const ROPE_CACHES_SUBGRAPH = '/model/rope_caches_subgraph';
