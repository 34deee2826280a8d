import type { ModelConfig } from '@ropeswitch/core';
import type { onnx as O } from 'onnx-proto';
import { attr } from '../onnx/graph-nodes.js';
import { valueInfo } from '../onnx/graph-nodes.js';
import { makeModel } from '../onnx/model-proto.js';
import { DataType } from '../onnx/onnx-namespace.js';
import type { ExportWeights } from './export-weights.js';
import { GraphBuilder } from './graph-builder.js';

/** Bumped whenever the exported graph changes, so models cached on disk by an older exporter are not reused. */
export const EXPORTER_VERSION = 3;

/**
 * Names of the exported decoder's inputs and outputs. One graph serves prefill chunks and decode
 * steps: S new tokens (S ≥ 1) attend to the caller's cache and to each other.
 *
 * Inputs:
 * - `input_ids` int64 `[S]`
 * - `rope_cos`, `rope_sin` float `[S][r/2]`: cos/sin of each new token's angles, attention factor
 *   applied. The caller computes them for the regime it chose: the graph holds no frequencies.
 * - `past_length` int64 `[1]`: how many leading cache rows are valid (the rest are masked out).
 * - `logits_count` int64 `[1]`: logits are returned for the last N new tokens (0 ≤ N ≤ S).
 * - `past_key.{l}`, `past_value.{l}` float `[kvHead][capacity][headDim]`: the caller's cache
 *   storage itself (capacity ≥ 1). Inputs only: the graph never copies or returns the cache.
 *
 * Outputs:
 * - `logits` float `[N][vocab]`
 * - `new_key.{l}`, `new_value.{l}` float `[kvHead][S][headDim]`: the new tokens' keys (after
 *   rotary) and values, which the caller writes into its cache at rows `past_length …`.
 */
export const DecoderIo = {
  inputIds: 'input_ids',
  ropeCos: 'rope_cos',
  ropeSin: 'rope_sin',
  pastLength: 'past_length',
  logitsCount: 'logits_count',
  pastKey: (l: number) => `past_key.${l}`,
  pastValue: (l: number) => `past_value.${l}`,
  logits: 'logits',
  newKey: (l: number) => `new_key.${l}`,
  newValue: (l: number) => `new_value.${l}`,
} as const;

/** Builds the decoder graph of `config` over `weights` (see {@link DecoderIo} for its contract). */
export function buildDecoderModel(config: ModelConfig, weights: ExportWeights): O.ModelProto {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim: D, vocabSize: V, rmsNormEps: eps } = config;
  const r = config.rope.rotaryDim;
  const half = r / 2;
  const group = numHeads / numKvHeads;
  const qDim = numHeads * D;
  const kvDim = numKvHeads * D;
  const b = new GraphBuilder();

  // Shared per call: the masks and the rotary tables shaped for broadcasting.
  const seqLen = b.op('Shape', [DecoderIo.inputIds]); // [1]
  const seqScalar = b.op('Squeeze', [seqLen]);
  const capacity = b.op('Shape', [DecoderIo.pastKey(0)], { start: attr.int(1), end: attr.int(2) });
  const capScalar = b.op('Squeeze', [capacity]);
  const zero = b.float(0);
  const minusInf = b.float(-Infinity);
  // Past mask [capacity]: row j is visible iff j < past_length.
  const pastIdx = b.op('Range', [b.int64([0], []), capScalar, b.int64([1], [])]);
  const pastMask = b.op('Where', [b.op('Less', [pastIdx, DecoderIo.pastLength]), zero, minusInf]);
  // Causal mask of the new tokens [S][S]: token t sees u ≤ t.
  const newIdx = b.op('Range', [b.int64([0], []), seqScalar, b.int64([1], [])]);
  const cols = b.op('Unsqueeze', [newIdx, b.int64([0])]);
  const rows = b.op('Unsqueeze', [newIdx, b.int64([1])]);
  const newMask = b.op('Where', [b.op('LessOrEqual', [cols, rows]), zero, minusInf]);
  // cos/sin as RotaryEmbedding-23 takes them without position ids: [batch = 1][S][r/2].
  const cos3 = b.op('Unsqueeze', [DecoderIo.ropeCos, b.int64([0])]);
  const sin3 = b.op('Unsqueeze', [DecoderIo.ropeSin, b.int64([0])]);
  const rotaryAttrs = { rotary_embedding_dim: attr.int(r), interleaved: attr.int(config.rope.pairing === 'interleaved' ? 1 : 0) };

  /**
   * Rotates x `[S][heads·D]` → `[S][heads][D]`: the standard op (one kernel; measured faster than
   * the same rotation in Slice/Mul/Concat), rotate-half or interleaved, dims r … D−1 unrotated.
   */
  const rotate = (x: string, heads: number): string => {
    const rotated = b.op('RotaryEmbedding', [b.op('Unsqueeze', [x, b.int64([0])]), cos3, sin3], { ...rotaryAttrs, num_heads: attr.int(heads) });
    return b.op('Reshape', [rotated, b.int64([-1, heads, D])]);
  };

  const rmsNorm = (x: string, weight: string): string =>
    b.op('RMSNormalization', [x, weight], { axis: attr.int(-1), epsilon: attr.float(eps) });

  const outputs: O.IValueInfoProto[] = [valueInfo(DecoderIo.logits, DataType.FLOAT, ['logits_count', V])];
  const inputs: O.IValueInfoProto[] = [
    valueInfo(DecoderIo.inputIds, DataType.INT64, ['sequence']),
    valueInfo(DecoderIo.ropeCos, DataType.FLOAT, ['sequence', half]),
    valueInfo(DecoderIo.ropeSin, DataType.FLOAT, ['sequence', half]),
    valueInfo(DecoderIo.pastLength, DataType.INT64, [1]),
    valueInfo(DecoderIo.logitsCount, DataType.INT64, [1]),
  ];

  let x = b.op('Gather', [b.weight('model.embed_tokens.weight', weights.embed, [V, H]), DecoderIo.inputIds], { axis: attr.int(0) });
  const scale = b.float(1 / Math.sqrt(D));
  weights.layers.forEach((lw, l) => {
    b.scope = `/layers.${l}`;
    const pk = DecoderIo.pastKey(l);
    const pv = DecoderIo.pastValue(l);
    inputs.push(valueInfo(pk, DataType.FLOAT, [numKvHeads, 'capacity', D]), valueInfo(pv, DataType.FLOAT, [numKvHeads, 'capacity', D]));
    outputs.push(valueInfo(DecoderIo.newKey(l), DataType.FLOAT, [numKvHeads, 'sequence', D]), valueInfo(DecoderIo.newValue(l), DataType.FLOAT, [numKvHeads, 'sequence', D]));
    const p = `model.layers.${l}`;

    // Attention. Activations are [S][features]; heads are split off by Reshape.
    const xn = rmsNorm(x, b.weight(`${p}.input_layernorm.weight`, lw.inputNorm, [H]));
    let qkv = b.op('MatMul', [xn, b.weight(`${p}.self_attn.qkv.weight_t`, lw.qkv, [H, qDim + 2 * kvDim])]);
    if (lw.qkvBias) qkv = b.op('Add', [qkv, b.weight(`${p}.self_attn.qkv.bias`, lw.qkvBias, [qDim + 2 * kvDim])]);
    const [q, k, v] = b.opN('Split', [qkv, b.int64([qDim, kvDim, kvDim])], 3, { axis: attr.int(1) }) as [string, string, string];
    // Queries carry the 1/√D score scale (a rotation commutes with it).
    const qr = rotate(b.op('Mul', [q, scale]), numHeads);
    const kr = rotate(k, numKvHeads);
    // New rows in cache layout [kvHead][S][D]: graph outputs, and this step's own keys/values.
    const newK = b.op('Transpose', [kr], { perm: attr.ints([1, 0, 2]) }, DecoderIo.newKey(l));
    const newV = b.op('Transpose', [b.op('Reshape', [v, b.int64([-1, numKvHeads, D])])], { perm: attr.ints([1, 0, 2]) }, DecoderIo.newValue(l));
    // Queries grouped by kv head: [kvHead][group][S][D] (query head h uses kv head h / group).
    const q4 = b.op('Transpose', [b.op('Reshape', [qr, b.int64([-1, numKvHeads, group, D])])], { perm: attr.ints([1, 2, 0, 3]) });
    // Scores Q·Kᵀ → [kvHead][group][S][cap]. The Transpose of the cache feeding MatMul is fused by
    // onnxruntime into one MatMul reading K transposed in place (no copy); a Transpose on the query
    // side instead would select a FusedMatMul path 3× slower here (measured).
    const keysT = (keys: string) => b.op('Transpose', [b.op('Unsqueeze', [keys, b.int64([1])])], { perm: attr.ints([0, 1, 3, 2]) });
    const pastScores = b.op('Add', [b.op('MatMul', [q4, keysT(pk)]), pastMask]);
    const newScores = b.op('Add', [b.op('MatMul', [q4, keysT(newK)]), newMask]);
    const probs = b.op('Softmax', [b.op('Concat', [pastScores, newScores], { axis: attr.int(3) })], { axis: attr.int(-1) });
    const pastProbs = b.op('Slice', [probs, b.int64([0]), capacity, b.int64([3])]);
    const newProbs = b.op('Slice', [probs, capacity, b.int64([Number.MAX_SAFE_INTEGER]), b.int64([3])]);
    const ctx = b.op('Add', [
      b.op('MatMul', [pastProbs, b.op('Unsqueeze', [pv, b.int64([1])])]),
      b.op('MatMul', [newProbs, b.op('Unsqueeze', [newV, b.int64([1])])]),
    ]); // [kvHead][group][S][D]
    const merged = b.op('Reshape', [b.op('Transpose', [ctx], { perm: attr.ints([2, 0, 1, 3]) }), b.int64([-1, qDim])]);
    x = b.op('Add', [x, b.op('MatMul', [merged, b.weight(`${p}.self_attn.o_proj.weight_t`, lw.o, [qDim, H])])]);

    // SwiGLU MLP: up · silu(gate).
    const xn2 = rmsNorm(x, b.weight(`${p}.post_attention_layernorm.weight`, lw.postAttentionNorm, [H]));
    let gu = b.op('MatMul', [xn2, b.weight(`${p}.mlp.gate_up.weight_t`, lw.gateUp, [H, 2 * I])]);
    if (lw.gateUpBias) gu = b.op('Add', [gu, b.weight(`${p}.mlp.gate_up.bias`, lw.gateUpBias, [2 * I])]);
    const [gate, up] = b.opN('Split', [gu, b.int64([I, I])], 2, { axis: attr.int(1) }) as [string, string];
    const act = b.op('Mul', [b.op('Mul', [gate, b.op('Sigmoid', [gate])]), up]);
    let down = b.op('MatMul', [act, b.weight(`${p}.mlp.down_proj.weight_t`, lw.down, [I, H])]);
    if (lw.downBias) down = b.op('Add', [down, b.weight(`${p}.mlp.down_proj.bias`, lw.downBias, [H])]);
    x = b.op('Add', [x, down]);
  });

  b.scope = '/head';
  // Only the last N tokens reach the norm and the lm head.
  const first = b.op('Sub', [seqLen, DecoderIo.logitsCount]);
  const last = b.op('Slice', [x, first, b.int64([Number.MAX_SAFE_INTEGER]), b.int64([0])]);
  const hidden = rmsNorm(last, b.weight('model.norm.weight', weights.finalNorm, [H]));
  b.op('MatMul', [hidden, b.weight('lm_head.weight_t', weights.lmHead, [H, V])], {}, DecoderIo.logits);

  return makeModel(
    { name: 'ropeswitch_decoder', nodes: b.nodes, inputs, outputs, initializers: b.initializers },
    { producerVersion: String(EXPORTER_VERSION) },
  );
}
