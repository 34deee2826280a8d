import { type DecoderWeightSource, type KvCacheDtype, type ModelConfig, readDecoderWeights } from '@ropeswitch/core';
import type { onnx as O } from 'onnx-proto';
import { attr, valueInfo } from '../onnx/graph-nodes.js';
import { makeModel } from '../onnx/model-proto.js';
import { DataType } from '../onnx/onnx-namespace.js';
import { GraphBuilder, type InitializerSink } from './graph-builder.js';
import { DEFAULT_ROW_SLOTS, DecoderIo, EXPORTER_VERSION } from './decoder-io.js';
import { Projections, type QuantizationReport, type QuantizationSettings } from './projections.js';
import { SlotAttention } from './slot-attention.js';

export { DEFAULT_ROW_SLOTS, DecoderIo, EXPORTER_VERSION } from './decoder-io.js';

/** Options of {@link buildDecoderModel}. */
export interface DecoderGraphOptions {
  /** Rows one run can carry (default {@link DEFAULT_ROW_SLOTS}). */
  readonly slots?: number;
  /** Projections and LM head as `MatMulNBits` blocks (default: float32 `MatMul`). */
  readonly quantization?: QuantizationSettings;
  /** Where each weight goes as it is built (default: kept in the returned model). */
  readonly sink?: InitializerSink;
  /**
   * Element type of the cache inputs and new-row outputs (default `float32`): `float16` takes a
   * core `Float16KvCache`'s storage and attends in float32 (see `SlotAttention`).
   */
  readonly cacheDtype?: KvCacheDtype;
}

/** The exported decoder and what it did with the weights. */
export interface DecoderModel {
  readonly model: O.ModelProto;
  readonly quantization: QuantizationReport;
  readonly slots: number;
}

/**
 * Builds the decoder graph of `config` (see {@link DecoderIo} for its contract), reading its
 * weights from `weights` (core's `readDecoderWeights` order: layers, then embedding, LM head, final
 * norm) and handing each one to `options.sink` as soon as it is laid out, so only one layer's
 * weights are in memory at a time when the sink writes them out.
 */
export function buildDecoderModel(config: ModelConfig, weights: DecoderWeightSource, options: DecoderGraphOptions = {}): DecoderModel {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim: D, vocabSize: V, rmsNormEps: eps } = config;
  const slots = options.slots ?? DEFAULT_ROW_SLOTS;
  if (!Number.isSafeInteger(slots) || slots < 1) throw new RangeError(`slots must be a positive integer, got ${slots}`);
  const r = config.rope.rotaryDim;
  const half = r / 2;
  const qDim = numHeads * D;
  const kvDim = numKvHeads * D;
  const b = new GraphBuilder(options.sink);
  const proj = new Projections(b, options.quantization);

  const attention = new SlotAttention(b, config, slots, options.cacheDtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT);
  // cos/sin as RotaryEmbedding-23 takes them without position ids: [batch = 1][T][r/2].
  const cos3 = b.op('Unsqueeze', [DecoderIo.ropeCos, b.int64([0])]);
  const sin3 = b.op('Unsqueeze', [DecoderIo.ropeSin, b.int64([0])]);
  const rotaryAttrs = { rotary_embedding_dim: attr.int(r), interleaved: attr.int(config.rope.pairing === 'interleaved' ? 1 : 0) };

  /**
   * Rotates x `[T][heads·D]` → `[T][heads][D]`: the standard op (one kernel; measured faster than
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
    valueInfo(DecoderIo.inputIds, DataType.INT64, ['tokens']),
    valueInfo(DecoderIo.ropeCos, DataType.FLOAT, ['tokens', half]),
    valueInfo(DecoderIo.ropeSin, DataType.FLOAT, ['tokens', half]),
    ...attention.slotInputs(),
    valueInfo(DecoderIo.logitsIndex, DataType.INT64, ['logits_count']),
  ];

  // The embedding's bytes come after the layers' (the reading order); the node can name it now.
  const embedName = 'model.embed_tokens.weight';
  let x = b.op('Gather', [embedName, DecoderIo.inputIds], { axis: attr.int(0) });
  const scale = b.float(1 / Math.sqrt(D));

  const read = readDecoderWeights(config, weights, (lw, l) => {
    b.scope = `/layers.${l}`;
    inputs.push(...attention.cacheInputs(l));
    outputs.push(...attention.newRowOutputs(l));
    const p = `model.layers.${l}`;

    // Attention. Activations are [T][features]; heads are split off by Reshape.
    const xn = rmsNorm(x, b.weight(`${p}.input_layernorm.weight`, lw.inputNorm, [H]));
    const qkv = proj.project(xn, `${p}.self_attn.qkv`, lw.qkv, qDim + 2 * kvDim, H, lw.qkvBias);
    const [q, k, v] = b.opN('Split', [qkv, b.int64([qDim, kvDim, kvDim])], 3, { axis: attr.int(1) }) as [string, string, string];
    // Queries carry the 1/√D score scale (a rotation commutes with it).
    const qr = rotate(b.op('Mul', [q, scale]), numHeads);
    const kr = rotate(k, numKvHeads);
    const merged = attention.attend(l, qr, kr, v);
    x = b.op('Add', [x, proj.project(merged, `${p}.self_attn.o_proj`, lw.o, H, qDim)]);

    // SwiGLU MLP: up · silu(gate).
    const xn2 = rmsNorm(x, b.weight(`${p}.post_attention_layernorm.weight`, lw.postAttentionNorm, [H]));
    const gu = proj.project(xn2, `${p}.mlp.gate_up`, lw.gateUp, 2 * I, H, lw.gateUpBias);
    const [gate, up] = b.opN('Split', [gu, b.int64([I, I])], 2, { axis: attr.int(1) }) as [string, string];
    const act = b.op('Mul', [b.op('Mul', [gate, b.op('Sigmoid', [gate])]), up]);
    x = b.op('Add', [x, proj.project(act, `${p}.mlp.down_proj`, lw.down, H, I, lw.downBias)]);
  });

  // The embedding stays float32 (a Gather), also in quantized exports, as onnxruntime-genai's CPU builds keep it.
  b.weight(embedName, read.embed, [V, H]);
  b.scope = '/head';
  // Only the requested tokens reach the norm and the LM head.
  const picked = b.op('Gather', [x, DecoderIo.logitsIndex], { axis: attr.int(0) });
  const hidden = rmsNorm(picked, b.weight('model.norm.weight', read.finalNorm, [H]));
  const logits = proj.project(hidden, 'lm_head', read.lmHead, V, H);
  b.op('Identity', [logits], {}, DecoderIo.logits);

  const model = makeModel(
    { name: 'ropeswitch_decoder', nodes: b.nodes, inputs, outputs, initializers: b.initializers },
    { producerVersion: String(EXPORTER_VERSION) },
  );
  return { model, quantization: proj.report(), slots };
}
