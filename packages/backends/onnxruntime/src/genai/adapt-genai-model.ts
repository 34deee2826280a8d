import { readFile, writeFile } from 'node:fs/promises';
import { WeightsError } from '@ropeswitch/core';
import type { onnx as O } from 'onnx-proto';
import { readValueInfo, valueInfo } from '../onnx/graph-nodes.js';
import { decodeModel, encodeModel } from '../onnx/model-proto.js';
import { DataType } from '../onnx/onnx-namespace.js';
import { tensorDims } from '../onnx/tensor-proto.js';
import { type Graph, type Node, intAttr, removeDeadNodes } from './genai-graph-edit.js';

/** What {@link adaptGenaiModel} changed. */
export interface GenaiAdaptation {
  /** The adapted model, encoded. Its initializers (and their `external_data` entries) are the original's. */
  readonly model: Uint8Array;
  /** The graph inputs that now carry the rotary tables (GroupQueryAttention inputs 7 and 8). */
  readonly cosCache: string;
  readonly sinCache: string;
  /** r/2: the tables' width. */
  readonly rotaryHalf: number;
  /** Names of the nodes removed: the cache switch and whatever only fed it. */
  readonly removedNodes: readonly string[];
  /** GroupQueryAttention attributes, as read from the first layer (for checks against the HF config). */
  readonly attention: { readonly numHeads: number; readonly kvNumHeads: number; readonly rotaryInterleaved: boolean; readonly layers: number };
  /** ONNX element type of the caches and the tables (`DataType.FLOAT` for the CPU builds; 10 = float16 for CUDA ones). */
  readonly elemType: number;
  /** The adapted graph's inputs, in order. */
  readonly inputs: readonly string[];
}

/**
 * Rewrites an onnxruntime-genai decoder (GroupQueryAttention with `do_rotary=1`) so that its rotary
 * tables are graph inputs: the node producing GQA's `cos_cache` / `sin_cache` — the builder's `If` on
 * `total_sequence_length > original_max_position_embeddings` (LongRoPE) or constant initializers —
 * is removed, the two names become float inputs `[rows, r/2]`, and nodes left without consumers (the
 * `Greater` and its constant; never the `Gather` that also feeds `total_sequence_length`) are dropped.
 * Everything else is kept as it is: initializers with their `external_data` entries (same file name,
 * offsets and lengths: the weights file is never read nor rewritten), opset imports (com.microsoft
 * included), value infos, metadata.
 *
 * @throws WeightsError `unsupported-layout` when the model has no rotary GroupQueryAttention (e.g. the
 *   early MultiHeadAttention + RotaryEmbedding builds) or its layers disagree on the table names.
 */
export function adaptGenaiModel(modelBytes: Uint8Array): GenaiAdaptation {
  const model = decodeModel(modelBytes);
  if (!model.graph) throw new WeightsError('bad-model', 'the ONNX model has no graph');
  // Decoded messages are class instances: repeated fields are always arrays, strings always set.
  const graph = model.graph as unknown as Graph;
  const gqa = graph.node.filter((n) => n.opType === 'GroupQueryAttention' && n.domain === 'com.microsoft');
  const first = gqa[0];
  if (!first || intAttr(first, 'do_rotary') !== 1) {
    throw new WeightsError('unsupported-layout', 'the model has no GroupQueryAttention with do_rotary=1: only the onnxruntime-genai layout with rotary fused into GQA (Phi-3 / Phi-3.5 builds since mid-2024) can be adapted');
  }
  const cosCache = first.input[7] ?? '';
  const sinCache = first.input[8] ?? '';
  if (cosCache === '' || sinCache === '') throw new WeightsError('unsupported-layout', `${first.name}: GroupQueryAttention has no cos_cache / sin_cache inputs`);
  for (const n of gqa) {
    if (n.input[7] !== cosCache || n.input[8] !== sinCache || intAttr(n, 'do_rotary') !== 1) {
      throw new WeightsError('unsupported-layout', `${n.name}: every GroupQueryAttention must rotate with the same ${cosCache} / ${sinCache} tables`);
    }
  }
  if (graph.input.some((i) => i.name === cosCache || i.name === sinCache)) {
    throw new WeightsError('already-adapted', `${cosCache} / ${sinCache} are already graph inputs: the model is adapted`);
  }

  const rotaryHalf = detachProducer(graph, cosCache, sinCache);
  // The tables take the caches' element type (fp16 builds have fp16 caches and tables).
  const pastKey = graph.input.find((i) => i.name === first.input[3]);
  const elemType = pastKey ? readValueInfo(pastKey).elemType : DataType.FLOAT;
  graph.input.push(valueInfo(cosCache, elemType, ['rotary_rows', rotaryHalf]), valueInfo(sinCache, elemType, ['rotary_rows', rotaryHalf]));
  const before = new Set(graph.node.flatMap((n) => n.output));
  const removed = removeDeadNodes(graph);
  const after = new Set(graph.node.flatMap((n) => n.output));
  // Value infos of what is no longer computed go; the tables' are now graph inputs.
  graph.valueInfo = graph.valueInfo.filter((v) => {
    const name = v.name ?? '';
    return name !== cosCache && name !== sinCache && (after.has(name) || !before.has(name));
  });

  return {
    model: encodeModel(model),
    cosCache,
    sinCache,
    rotaryHalf,
    removedNodes: removed,
    elemType,
    inputs: graph.input.map((i) => i.name ?? ''),
    attention: {
      numHeads: intAttr(first, 'num_heads'),
      kvNumHeads: intAttr(first, 'kv_num_heads'),
      rotaryInterleaved: intAttr(first, 'rotary_interleaved') === 1,
      layers: gqa.length,
    },
  };
}

/** Reads `modelPath`, adapts it and writes the result to `outPath` (put it beside the original so relative external data resolves). */
export async function adaptGenaiModelFile(modelPath: string, outPath: string): Promise<Omit<GenaiAdaptation, 'model'>> {
  const { model, ...info } = adaptGenaiModel(new Uint8Array(await readFile(modelPath)));
  await writeFile(outPath, model);
  return info;
}

/**
 * Removes what produces `cos` / `sin`: an `If` (or `Constant`s) with those outputs, or initializers
 * of those names (their entries only: external bytes stay where they are). Returns r/2 as declared.
 */
function detachProducer(graph: Graph, cos: string, sin: string): number {
  const node = graph.node.find((n) => n.output.includes(cos) || n.output.includes(sin));
  if (node) {
    if (node.opType === 'If') {
      if (!node.output.includes(cos) || !node.output.includes(sin)) {
        throw new WeightsError('unsupported-layout', `${node.name}: the If that makes ${cos} must also make ${sin}`);
      }
      const half = branchHalf(node, node.output.indexOf(cos));
      graph.node = graph.node.filter((n) => n !== node);
      return half;
    }
    if (node.opType === 'Constant') {
      const consts = graph.node.filter((n) => n.opType === 'Constant' && (n.output.includes(cos) || n.output.includes(sin)));
      const half = tensorDims(consts[0]!.attribute.find((a) => a.name === 'value')?.t ?? {}).at(-1) ?? 0;
      graph.node = graph.node.filter((n) => !consts.includes(n));
      return checkHalf(half);
    }
    throw new WeightsError('unsupported-layout', `${cos} is made by a ${node.opType} node (${node.name}); an If, Constant or initializer was expected`);
  }
  const init = graph.initializer.find((t) => t.name === cos);
  if (!init || !graph.initializer.some((t) => t.name === sin)) {
    throw new WeightsError('unsupported-layout', `nothing in the graph makes ${cos} / ${sin}`);
  }
  graph.initializer = graph.initializer.filter((t) => t.name !== cos && t.name !== sin);
  return checkHalf(tensorDims(init).at(-1) ?? 0);
}

/** r/2 from the `If`'s then-branch output declaration (or its Constant's tensor). */
function branchHalf(node: Node, outputIndex: number): number {
  const branch = node.attribute?.find((a) => a.name === 'then_branch')?.g;
  const out = branch?.output?.[outputIndex];
  const declared = out ? readValueInfo(out).dims : [];
  if (declared.length === 2 && typeof declared[1] === 'number') return checkHalf(declared[1]);
  const producer = branch?.node?.find((n) => n.output?.includes(out?.name ?? ''));
  return checkHalf(tensorDims(producer?.attribute?.find((a) => a.name === 'value')?.t ?? {}).at(-1) ?? 0);
}

function checkHalf(half: number): number {
  if (!Number.isSafeInteger(half) || half <= 0) throw new WeightsError('unsupported-layout', 'cannot tell the rotary tables\' width (r/2) from the model');
  return half;
}
