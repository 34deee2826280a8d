import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ConfigError,
  LongRopeSchedule,
  type ModelConfig,
  type RopeRegime,
  type WeightStore,
  modelSchedule,
  readDecoderWeights,
  rotaryTables,
} from '@ropeswitch/core';
import type { onnx as O } from 'onnx-proto';
import { attr, makeNode, valueInfo } from '../onnx/graph-nodes.js';
import { makeModel, writeModel } from '../onnx/model-proto.js';
import { DataType } from '../onnx/onnx-namespace.js';
import { uint8Tensor } from '../onnx/tensor-proto.js';
import { quantizeBlockwise } from '../export/quantize.js';
import { transpose } from '../export/transpose.js';
import { GraphAssembly } from './genai-graph.js';
import {
  ATTENTION_MASK,
  COS_CACHE,
  INPUT_IDS,
  LOGITS,
  MASK_SUBGRAPH,
  PAST_KEY_TEMPLATE,
  PAST_VALUE_TEMPLATE,
  PRESENT_KEY_TEMPLATE,
  PRESENT_VALUE_TEMPLATE,
  ROPE_CACHES_SUBGRAPH,
  SIN_CACHE,
  dataFileFor,
  layerName,
} from './genai-layout.js';

/** Options of {@link writeGenaiModel}. */
export interface WriteGenaiModelOptions {
  /** The model file's name (default `model.onnx`); weights go to `<name>.data`. */
  readonly fileName?: string;
  /**
   * `'int4'`: the projections and the LM head as `MatMulNBits` (blocks of 32 with zero points,
   * `accuracy_level` 4), as the builder's `cpu-int4-rtn-block-32-acc-level-4` targets write them; the
   * embedding stays float32. Default: float32 `MatMul`s.
   */
  readonly quantize?: 'int4';
  /**
   * `'fp16'`: every float tensor, activation, cache and the logits in float16, as the builder's GPU
   * and web targets write them (with `quantize: 'int4'`: the `q4f16` layout). Default `'fp32'`.
   */
  readonly precision?: 'fp32' | 'fp16';
}

/** The files {@link writeGenaiModel} wrote. */
export interface GenaiModelFiles {
  readonly modelPath: string;
  readonly dataPath: string;
  readonly genaiConfigPath: string;
}

/**
 * Writes a decoder the way onnxruntime-genai's model builder does for its fp32 CPU target (and, by
 * `options`, its int4 CPU and float16 / q4f16 GPU-web targets): `model.onnx` (graph only),
 * `model.onnx.data` (every initializer) and `genai_config.json`.
 *
 * The graph: Gather embedding; per layer (Skip)SimplifiedLayerNormalization, one packed QKV MatMul
 * into com.microsoft GroupQueryAttention (`do_rotary=1`, caches `[B, kvHeads, T, headDim]`), o_proj
 * MatMul, SkipSimplifiedLayerNormalization, gate/up MatMuls with Sigmoid·Mul SiLU, down MatMul; final
 * SkipSimplifiedLayerNormalization and lm_head MatMul. `seqlens_k` / `total_sequence_length` come from
 * the attention-mask subgraph. LongRoPE models get the builder's `If` on `total_sequence_length > L`
 * choosing Constant cos/sin caches `[M, r/2]` (long factors) or `[L, r/2]` (short), each multiplied by
 * its attention factor; other schedules get one `[M, r/2]` pair of initializers (the base regime).
 *
 * With `quantize: 'int4'` the projections and the LM head are `MatMulNBits` instead (the int4 CPU
 * target's layout); with `precision: 'fp16'` every float tensor, activation, cache and the logits are
 * float16. Used to make genai-layout test models from any checkpoint the reference backend
 * reads; real models come from the builder itself.
 *
 * @throws ConfigError for features the builder layout written here does not cover (biases).
 */
export async function writeGenaiModel(
  dir: string,
  config: ModelConfig,
  weights: WeightStore,
  options: WriteGenaiModelOptions = {},
): Promise<GenaiModelFiles> {
  if (config.attentionBias || config.mlpBias) {
    throw new ConfigError('unsupported', 'writeGenaiModel writes bias-free decoders (Phi-3 / Llama without attention_bias or mlp_bias)');
  }
  const decoder = readDecoderWeights(config, weights);
  const fileName = options.fileName ?? 'model.onnx';
  const dataFile = dataFileFor(fileName);
  const floatType = options.precision === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT;
  const g = new GraphAssembly(floatType);
  const graphInputs = ioInputs(config, floatType);
  const graphOutputs = ioOutputs(config, floatType);

  // attention_mask → seqlens_k (int32 [B]) and total_sequence_length (int32 scalar).
  const reduceSum = g.node('ReduceSum', `${MASK_SUBGRAPH}/ReduceSum`, [ATTENTION_MASK, g.int64Constant([1])], [`${MASK_SUBGRAPH}/ReduceSum/output_0`], { keepdims: attr.int(0) });
  const sub = g.node('Sub', `${MASK_SUBGRAPH}/Sub`, [reduceSum, g.int64Constant([1])], [`${MASK_SUBGRAPH}/Sub/output_0`]);
  const seqlensK = g.node('Cast', `${MASK_SUBGRAPH}/Sub/Cast`, [sub], [`${MASK_SUBGRAPH}/Sub/Cast/output_0`], { to: attr.int(DataType.INT32) });
  const shape = g.node('Shape', `${MASK_SUBGRAPH}/Shape`, [ATTENTION_MASK], [`${MASK_SUBGRAPH}/Shape/output_0`]);
  const gather = g.node('Gather', `${MASK_SUBGRAPH}/Gather`, [shape, g.int64Constant(1)], [`${MASK_SUBGRAPH}/Gather/output_0`], { axis: attr.int(0) });
  const totalSeqLen = g.node('Cast', `${MASK_SUBGRAPH}/Gather/Cast`, [gather], [`${MASK_SUBGRAPH}/Gather/Cast/output_0`], { to: attr.int(DataType.INT32) });

  writeRotaryCaches(g, config, gather);

  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  g.initializer('model.embed_tokens.weight', decoder.embed, [V, H]);
  let root = g.node('Gather', '/model/embed_tokens/Gather', ['model.embed_tokens.weight', INPUT_IDS], ['/model/embed_tokens/Gather/output_0']);
  let skip: string | undefined;
  const eps = attr.float(config.rmsNormEps);

  /** (Skip)SimplifiedLayerNormalization; returns the normalised output and updates the residual stream. */
  const norm = (layer: number, location: string, weight: Float32Array, last = false): string => {
    const w = g.initializer(`model.layers.${layer}.${location}_layernorm.weight`, weight, [H]);
    const base = `/model/layers.${layer}/${location}_layernorm`;
    const out0 = `${base}/output_0`;
    if (skip === undefined) {
      return g.node('SimplifiedLayerNormalization', `${base}/LayerNorm`, [root, w], [out0], { axis: attr.int(-1), epsilon: eps, stash_type: attr.int(1) });
    }
    const outputs = last ? [out0] : [out0, '', '', `${base}/output_3`];
    g.node('SkipSimplifiedLayerNormalization', `${base}/SkipLayerNorm`, [root, skip, w], outputs, { epsilon: eps }, 'com.microsoft');
    if (!last) root = `${base}/output_3`;
    return out0;
  };
  const matmul = (basename: string, input: string, weight: Float32Array, outDim: number, inDim: number, output?: string): string => {
    const stem = basename.slice(1).replaceAll('/', '.');
    if (options.quantize === 'int4' && inDim % 32 === 0) {
      const q = quantizeBlockwise(weight, outDim, inDim, 4, 32);
      const inputs = [
        input,
        g.tensor(uint8Tensor(`${stem}.weight_Q4`, q.data, [outDim, inDim / 32, 16])),
        g.initializer(`${stem}.weight_scales`, q.scales, [q.scales.length]),
        g.tensor(uint8Tensor(`${stem}.weight_zero_points`, q.zeroPoints, [q.zeroPoints.length])),
      ];
      const attrs = { K: attr.int(inDim), N: attr.int(outDim), bits: attr.int(4), block_size: attr.int(32), accuracy_level: attr.int(4) };
      return g.node('MatMulNBits', `${basename}NBits`, inputs, [output ?? `${basename}NBits/output_0`], attrs, 'com.microsoft');
    }
    const w = g.initializer(`${stem}.weight`, transpose(weight, outDim, inDim), [inDim, outDim]);
    return g.node('MatMul', basename, [input, w], [output ?? `${basename}/output_0`]);
  };

  for (let l = 0; l < config.numLayers; l++) {
    const lw = decoder.layers[l]!;
    const x = norm(l, 'input', lw.inputNorm);
    const packed = matmul(`/model/layers.${l}/attn/qkv_proj/MatMul`, x, lw.qkv, qDim + 2 * kvDim, H);
    const gqaName = `/model/layers.${l}/attn/GroupQueryAttention`;
    const attn = g.node(
      'GroupQueryAttention',
      gqaName,
      [packed, '', '', layerName(PAST_KEY_TEMPLATE, l), layerName(PAST_VALUE_TEMPLATE, l), seqlensK, totalSeqLen, COS_CACHE, SIN_CACHE],
      [`${gqaName}/output_0`, layerName(PRESENT_KEY_TEMPLATE, l), layerName(PRESENT_VALUE_TEMPLATE, l)],
      {
        num_heads: attr.int(numHeads),
        kv_num_heads: attr.int(numKvHeads),
        scale: attr.float(1 / Math.sqrt(headDim)),
        local_window_size: attr.int(config.slidingWindow ?? -1),
        softcap: attr.float(0),
        do_rotary: attr.int(1),
        rotary_interleaved: attr.int(config.rope.pairing === 'interleaved' ? 1 : 0),
      },
      'com.microsoft',
    );
    skip = matmul(`/model/layers.${l}/attn/o_proj/MatMul`, attn, lw.o, H, qDim);
    const y = norm(l, 'post_attention', lw.postAttentionNorm);
    // The builder keeps gate and up as two MatMuls.
    const [gate, up] = splitRows(lw.gateUp, I * H);
    const gateOut = matmul(`/model/layers.${l}/mlp/gate_proj/MatMul`, y, gate, I, H);
    const upOut = matmul(`/model/layers.${l}/mlp/up_proj/MatMul`, y, up, I, H);
    const sig = g.node('Sigmoid', `/model/layers.${l}/mlp/act_fn/Sigmoid`, [gateOut], [`/model/layers.${l}/mlp/act_fn/Sigmoid/output_0`]);
    const act = g.node('Mul', `/model/layers.${l}/mlp/act_fn/Mul`, [gateOut, sig], [`/model/layers.${l}/mlp/act_fn/Mul/output_0`]);
    const prod = g.node('Mul', `/model/layers.${l}/mlp/Mul`, [act, upOut], [`/model/layers.${l}/mlp/Mul/output_0`]);
    skip = matmul(`/model/layers.${l}/mlp/down_proj/MatMul`, prod, lw.down, H, I);
  }
  const final = norm(config.numLayers, 'final_norm', decoder.finalNorm, true);
  matmul('/lm_head/MatMul', final, decoder.lmHead, V, H, LOGITS);

  // The builder's current output: IR 10, ai.onnx 21, com.microsoft 1.
  const model = makeModel(
    { name: 'main_graph', nodes: g.nodes, inputs: graphInputs, outputs: graphOutputs, initializers: g.initializers },
    {
      irVersion: 10,
      opsets: [
        { domain: '', version: 21 },
        { domain: 'com.microsoft', version: 1 },
      ],
      producerName: 'ropeswitch (onnxruntime-genai builder layout)',
    },
  );
  await mkdir(dir, { recursive: true });
  const modelPath = join(dir, fileName);
  const genaiConfigPath = join(dir, 'genai_config.json');
  // Every initializer goes to the side file, as the builder saves them (size_threshold_bytes=0).
  const written = writeModel(modelPath, model, { inlineLimitBytes: 0, minExternalBytes: 0, externalDataFile: dataFile });
  const dataPath = written.externalDataPath ?? join(dir, dataFile);
  await writeFile(genaiConfigPath, `${JSON.stringify(genaiConfig(config, fileName), null, 4)}\n`);
  return { modelPath, dataPath, genaiConfigPath };
}

/**
 * LongRoPE: `Greater(total_sequence_length, L)` → `If` whose branches are Constant caches, long
 * `[M, r/2]` (then) and short `[L, r/2]` (else). Other schedules: `[M, r/2]` initializers.
 */
function writeRotaryCaches(g: GraphAssembly, config: ModelConfig, totalLength: string): void {
  const schedule = modelSchedule(config.rope);
  const M = config.maxPositionEmbeddings;
  if (!(schedule instanceof LongRopeSchedule)) {
    const { cos, sin, half } = cacheTables(schedule.regimeFor(1), M);
    g.initializer(COS_CACHE, cos, [M, half]);
    g.initializer(SIN_CACHE, sin, [M, half]);
    return;
  }
  const L = schedule.threshold;
  const greater = g.node('Greater', `${ROPE_CACHES_SUBGRAPH}/Greater`, [totalLength, g.int64Constant(L)], [`${ROPE_CACHES_SUBGRAPH}/Greater/output_0`]);
  const branch = (size: 'large' | 'small', regime: RopeRegime, rows: number): O.IGraphProto => {
    const { cos, sin, half } = cacheTables(regime, rows);
    const names = [`cos_cache_${size}`, `sin_cache_${size}`];
    return {
      name: `${size}_rope_caches_graph`,
      node: [cos, sin].map((data, k) =>
        makeNode('Constant', [], [names[k]!], { value: attr.tensor(g.floatTensor(names[k]!, data, [rows, half])) }, { name: `/${size}/${k === 0 ? 'cos' : 'sin'}_cache/Constant` }),
      ),
      output: names.map((n) => valueInfo(n, g.floatType, [rows, half])),
    };
  };
  g.node('If', `${ROPE_CACHES_SUBGRAPH}/If`, [greater], [COS_CACHE, SIN_CACHE], {
    then_branch: attr.graph(branch('large', schedule.long, M)),
    else_branch: attr.graph(branch('small', schedule.short, L)),
  });
}

/** cos/sin of positions 0 … rows−1 under `regime`, times its attention factor, float32 like the builder's torch tables. */
function cacheTables(regime: RopeRegime, rows: number): { cos: Float32Array; sin: Float32Array; half: number } {
  return rotaryTables(regime, Int32Array.from({ length: rows }, (_, p) => p));
}

function ioInputs(c: ModelConfig, floatType: number): O.IValueInfoProto[] {
  const kv = (name: string) => valueInfo(name, floatType, ['batch_size', c.numKvHeads, 'past_sequence_length', c.headDim]);
  return [
    valueInfo(INPUT_IDS, DataType.INT64, ['batch_size', 'sequence_length']),
    valueInfo(ATTENTION_MASK, DataType.INT64, ['batch_size', 'total_sequence_length']),
    ...Array.from({ length: c.numLayers }, (_, l) => [kv(layerName(PAST_KEY_TEMPLATE, l)), kv(layerName(PAST_VALUE_TEMPLATE, l))]).flat(),
  ];
}

function ioOutputs(c: ModelConfig, floatType: number): O.IValueInfoProto[] {
  const kv = (name: string) => valueInfo(name, floatType, ['batch_size', c.numKvHeads, 'total_sequence_length', c.headDim]);
  return [
    valueInfo(LOGITS, floatType, ['batch_size', 'sequence_length', c.vocabSize]),
    ...Array.from({ length: c.numLayers }, (_, l) => [kv(layerName(PRESENT_KEY_TEMPLATE, l)), kv(layerName(PRESENT_VALUE_TEMPLATE, l))]).flat(),
  ];
}

/** `genai_config.json` as the builder writes it (fields the runtime reads; search defaults). */
function genaiConfig(c: ModelConfig, fileName: string): Record<string, unknown> {
  const eos = c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds;
  return {
    model: {
      bos_token_id: c.bosTokenId ?? 1,
      context_length: c.maxPositionEmbeddings,
      decoder: {
        session_options: { log_id: 'onnxruntime-genai', provider_options: [] },
        filename: fileName,
        head_size: c.headDim,
        hidden_size: c.hiddenSize,
        inputs: {
          input_ids: INPUT_IDS,
          attention_mask: ATTENTION_MASK,
          past_key_names: PAST_KEY_TEMPLATE,
          past_value_names: PAST_VALUE_TEMPLATE,
        },
        outputs: { logits: LOGITS, present_key_names: PRESENT_KEY_TEMPLATE, present_value_names: PRESENT_VALUE_TEMPLATE },
        num_attention_heads: c.numHeads,
        num_hidden_layers: c.numLayers,
        num_key_value_heads: c.numKvHeads,
      },
      eos_token_id: eos ?? null,
      pad_token_id: c.eosTokenIds[0] ?? null,
      type: c.modelType,
      vocab_size: c.vocabSize,
    },
    search: {
      diversity_penalty: 0.0,
      do_sample: false,
      early_stopping: true,
      length_penalty: 1.0,
      max_length: c.maxPositionEmbeddings,
      min_length: 0,
      no_repeat_ngram_size: 0,
      num_beams: 1,
      num_return_sequences: 1,
      past_present_share_buffer: false,
      repetition_penalty: 1.0,
      temperature: 1.0,
      top_k: 50,
      top_p: 1.0,
    },
  };
}

function splitRows(w: Float32Array, at: number): [Float32Array, Float32Array] {
  return [w.subarray(0, at), w.subarray(at)];
}
