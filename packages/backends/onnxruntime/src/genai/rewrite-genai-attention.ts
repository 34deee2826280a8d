import { type KvCacheDtype, WeightsError } from '@ropeswitch/core';
import type { onnx as O } from 'onnx-proto';
import { DecoderIo } from '../export/decoder-io.js';
import { GraphBuilder } from '../export/graph-builder.js';
import { SlotAttention } from '../export/slot-attention.js';
import { attr, readAttribute, readValueInfo, valueInfo } from '../onnx/graph-nodes.js';
import { decodeModel, encodeModel } from '../onnx/model-proto.js';
import { DataType } from '../onnx/onnx-namespace.js';
import { type Graph, type Node, intAttr, removeDeadNodes } from './genai-graph-edit.js';
import type { GenaiIoNames } from './genai-session.js';
import { layerName } from './genai-layout.js';

/** What the rewrite needs to know that the graph does not say in one place. */
export interface GenaiRewriteOptions {
  /** Row slots of the rewritten graph (rows one session run carries). */
  readonly slots: number;
  /** The model's head size and rotated dims per head (from its HF config). */
  readonly headDim: number;
  readonly rotaryDim: number;
  /** The model's position limit: a sliding window at least this long never applies (Phi-3-mini-128k's 262144). */
  readonly maxPositions: number;
  /** I/O names from `genai_config.json`. */
  readonly names: GenaiIoNames;
  /** Element type of the caller-owned caches (default `float32`; `float16`: core `Float16KvCache`s, cast to float32 for attention). */
  readonly cacheDtype?: KvCacheDtype;
}

/** What {@link rewriteGenaiAttention} made. */
export interface GenaiAttentionRewrite {
  /** The rewritten model, encoded; initializers and their `external_data` entries are the original's. */
  readonly model: Uint8Array;
  readonly slots: number;
  /** GroupQueryAttention attributes, as read from the first layer (for checks against the HF config). */
  readonly attention: { readonly numHeads: number; readonly kvNumHeads: number; readonly rotaryInterleaved: boolean; readonly layers: number };
  /** ONNX element type of the model's activations (and of its own caches): `DataType.FLOAT` or `FLOAT16`. */
  readonly elemType: number;
  /** Names of the original nodes removed (the attention ops, the mask subgraph, the rotary-table switch). */
  readonly removedNodes: readonly string[];
}

/**
 * Rewrites an onnxruntime-genai decoder (GroupQueryAttention with `do_rotary=1`, as the model
 * builder writes Phi-3 / Phi-3.5 / Phi-4-mini) to the exporter's graph contract (`DecoderIo`), so
 * `GenaiOnnxBackend` runs it exactly like an export of `OnnxRuntimeBackend`:
 *
 * - each GroupQueryAttention becomes the exporter's slot attention over **caller-owned caches**
 *   (`past_key.{l}.{s}`, never copied, never returned; only the new rows come out as
 *   `new_key.{l}` / `new_value.{l}`), after a com.microsoft `RotaryEmbedding` of queries and keys
 *   with the caller's per-token cos/sin (`rope_cos` / `rope_sin`): the caller picks every token's regime;
 * - rows of several sequences share one run on one token axis (`input_ids` `[T]`, `row_offsets`,
 *   `past_lengths`), the rest of the graph (norms, `MatMul` / `MatMulNBits` projections, MLP)
 *   being per token;
 * - only the tokens in `logits_index` reach the LM head; `logits` is float32 `[N][vocab]`;
 * - float16 models (the GPU / web `q4f16` builds) compute attention in float32 (a Cast of q, k, v
 *   in and of the context out), the rest of the graph as it is; the caches are float32, or with
 *   `cacheDtype: 'float16'` binary16 (cast to float32 inside, new rows returned rounded);
 * - a sliding window at least as long as the model's positions (it never applies) is dropped;
 * - what only fed the old attention goes: the attention-mask subgraph, the rotary-table `If` and its
 *   tables, the `attention_mask` and `past_key_values.*` inputs, the `present.*` outputs.
 *
 * Every other node, initializer (with its external-data entries: the weights file is neither read
 * nor rewritten), opset import and metadata is kept.
 *
 * @throws WeightsError `unsupported-layout` for a model without rotary GroupQueryAttention, with a
 *   sliding window shorter than its positions or a softcap, or whose layers disagree.
 */
export function rewriteGenaiAttention(modelBytes: Uint8Array, options: GenaiRewriteOptions): GenaiAttentionRewrite {
  const model = decodeModel(modelBytes);
  if (!model.graph) throw new WeightsError('bad-model', 'the ONNX model has no graph');
  const graph = model.graph as unknown as Graph;
  const { slots, headDim: D, rotaryDim: r, names } = options;
  const gqa = graph.node.filter((n) => n.opType === 'GroupQueryAttention' && n.domain === 'com.microsoft');
  const first = gqa[0];
  if (!first || intAttr(first, 'do_rotary') !== 1) {
    throw new WeightsError('unsupported-layout', 'the model has no GroupQueryAttention with do_rotary=1: only the onnxruntime-genai layout with rotary fused into GQA (Phi-3 / Phi-3.5 builds since mid-2024) can be rewritten');
  }
  const numHeads = intAttr(first, 'num_heads');
  const kvNumHeads = intAttr(first, 'kv_num_heads');
  const interleaved = intAttr(first, 'rotary_interleaved');
  for (const n of gqa) {
    const window = readAttribute(n, 'local_window_size');
    const softcap = readAttribute(n, 'softcap');
    if (intAttr(n, 'do_rotary') !== 1 || intAttr(n, 'num_heads') !== numHeads || intAttr(n, 'kv_num_heads') !== kvNumHeads || intAttr(n, 'rotary_interleaved') !== interleaved) {
      throw new WeightsError('unsupported-layout', `${n.name}: every GroupQueryAttention must rotate and have the same heads as the first`);
    }
    if (typeof window === 'number' && window !== -1 && window < options.maxPositions) {
      throw new WeightsError('unsupported-layout', `${n.name}: a sliding window (local_window_size ${window}, shorter than the ${options.maxPositions} positions) is not supported`);
    }
    if (typeof softcap === 'number' && softcap !== 0) throw new WeightsError('unsupported-layout', `${n.name}: a softcap (${softcap}) is not supported`);
  }
  const pastKey = graph.input.find((i) => i.name === first.input[3]);
  const elemType = pastKey ? readValueInfo(pastKey).elemType : DataType.FLOAT;
  const half16 = elemType === DataType.FLOAT16;

  const b = new GraphBuilder();
  b.scope = '/ropeswitch';
  // Graph-wide: ids with the batch axis the rest of the graph expects, position ids 0 … T−1 (row
  // t of the caller's tables is token t), the slots' ranges and masks.
  const idsBatch = b.op('Unsqueeze', [DecoderIo.inputIds, b.int64([0])]);
  const tokens = b.op('Shape', [DecoderIo.inputIds]);
  const positionIds = b.op('Unsqueeze', [b.op('Range', [b.int64([0], []), b.op('Squeeze', [tokens]), b.int64([1], [])]), b.int64([0])]);
  const cacheElem = options.cacheDtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  const attention = new SlotAttention(b, { numHeads, numKvHeads: kvNumHeads, headDim: D }, slots, cacheElem);
  const prelude = b.nodes.splice(0);

  const toFloat = (x: string) => (half16 ? b.op('Cast', [x], { to: attr.int(DataType.FLOAT) }) : x);
  const rotate = (x: string, heads: number) => {
    const rotated = b.op(
      'RotaryEmbedding',
      [b.op('Unsqueeze', [x, b.int64([0])]), positionIds, DecoderIo.ropeCos, DecoderIo.ropeSin],
      { interleaved: attr.int(interleaved), num_heads: attr.int(heads), rotary_embedding_dim: attr.int(r) },
      undefined,
      'com.microsoft',
    );
    return b.op('Reshape', [rotated, b.int64([-1, heads, D])]);
  };
  const replacements = new Map<Node, O.INodeProto[]>();
  gqa.forEach((n, l) => {
    b.scope = `/ropeswitch/layers.${l}`;
    const qDim = numHeads * D;
    const kvDim = kvNumHeads * D;
    let q: string;
    let k: string;
    let v: string;
    if ((n.input[1] ?? '') === '') {
      const packed = b.op('Reshape', [toFloat(n.input[0]!), b.int64([-1, qDim + 2 * kvDim])]);
      [q, k, v] = b.opN('Split', [packed, b.int64([qDim, kvDim, kvDim])], 3, { axis: attr.int(1) }) as [string, string, string];
    } else {
      [q, k, v] = [0, 1, 2].map((i) => b.op('Reshape', [toFloat(n.input[i]!), b.int64([-1, i === 0 ? qDim : kvDim])])) as [string, string, string];
    }
    const scaleAttr = readAttribute(n, 'scale');
    const scale = typeof scaleAttr === 'number' && scaleAttr !== 0 ? scaleAttr : 1 / Math.sqrt(D);
    const context = attention.attend(l, rotate(b.op('Mul', [q, b.float(scale)]), numHeads), rotate(k, kvNumHeads), v);
    const batched = b.op('Unsqueeze', [context, b.int64([0])], {}, half16 ? undefined : n.output[0]);
    if (half16) b.op('Cast', [batched], { to: attr.int(DataType.FLOAT16) }, n.output[0]);
    replacements.set(n, b.nodes.splice(0));
  });

  // Only the requested tokens reach the LM head.
  const head = graph.node.find((n) => n.output.includes(names.logits));
  if (!head) throw new WeightsError('unsupported-layout', `nothing in the graph makes ${names.logits}`);
  b.scope = '/ropeswitch/head';
  const picked = b.op('Gather', [head.input[0]!, DecoderIo.logitsIndex], { axis: attr.int(1) });
  const beforeHead = b.nodes.splice(0);
  const headOut = `${b.scope}/logits_batched`;
  head.output = head.output.map((o) => (o === names.logits ? headOut : o));
  head.input[0] = picked;
  const squeezed = b.op('Squeeze', [headOut, b.int64([0])], {}, half16 ? undefined : DecoderIo.logits);
  if (half16) b.op('Cast', [squeezed], { to: attr.int(DataType.FLOAT) }, DecoderIo.logits);
  const afterHead = b.nodes.splice(0);

  for (const n of graph.node) n.input = n.input.map((i) => (i === names.inputIds ? idsBatch : i));
  const nodes: Node[] = [...(prelude as Node[])];
  for (const n of graph.node) {
    const replaced = replacements.get(n);
    if (replaced) nodes.push(...(replaced as Node[]));
    else if (n === head) nodes.push(...(beforeHead as Node[]), n, ...(afterHead as Node[]));
    else nodes.push(n);
  }
  graph.node = nodes;
  graph.initializer.push(...b.initializers);

  const layers = gqa.length;
  const oldInputs = new Set([names.inputIds, names.attentionMask, ...Array.from({ length: layers }, (_, l) => [layerName(names.pastKey, l), layerName(names.pastValue, l)]).flat()]);
  const oldOutputs = new Set([names.logits, ...Array.from({ length: layers }, (_, l) => [layerName(names.presentKey, l), layerName(names.presentValue, l)]).flat()]);
  const otherInputs = graph.input.filter((i) => !oldInputs.has(i.name ?? ''));
  graph.input = [
    valueInfo(DecoderIo.inputIds, DataType.INT64, ['tokens']),
    valueInfo(DecoderIo.ropeCos, DataType.FLOAT, ['tokens', r / 2]),
    valueInfo(DecoderIo.ropeSin, DataType.FLOAT, ['tokens', r / 2]),
    ...attention.slotInputs(),
    valueInfo(DecoderIo.logitsIndex, DataType.INT64, ['logits_count']),
    ...Array.from({ length: layers }, (_, l) => attention.cacheInputs(l)).flat(),
    ...otherInputs,
  ];
  graph.output = [
    valueInfo(DecoderIo.logits, DataType.FLOAT, ['logits_count', readValueInfo(graph.output.find((o) => o.name === names.logits) ?? {}).dims.at(-1) ?? 'vocab']),
    ...Array.from({ length: layers }, (_, l) => attention.newRowOutputs(l)).flat(),
    ...graph.output.filter((o) => !oldOutputs.has(o.name ?? '')),
  ];
  const before = new Set(graph.node.flatMap((n) => n.output));
  const removed = [...gqa.map((n) => n.name), ...removeDeadNodes(graph)];
  const after = new Set(graph.node.flatMap((n) => n.output));
  // Value infos of what is no longer computed, or whose shape changed (the logits), go.
  graph.valueInfo = graph.valueInfo.filter((vi) => {
    const name = vi.name ?? '';
    return name !== names.logits && (after.has(name) || !before.has(name)) && !oldInputs.has(name);
  });
  return { model: encodeModel(model), slots, attention: { numHeads, kvNumHeads, rotaryInterleaved: interleaved === 1, layers }, elemType, removedNodes: removed };
}
