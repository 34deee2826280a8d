import type { ModelConfig } from '../config/model-config.js';
import type { WeightStore } from '../weights/weight-store.js';

/** One decoder layer in HF `[out][in]` layout, projections fused the Phi-3 way whatever the checkpoint's layout. */
export interface DecoderLayerWeights {
  readonly inputNorm: Float32Array;
  /** `[(numHeads + 2·numKvHeads)·headDim][hidden]`: q rows, then k, then v. */
  readonly qkv: Float32Array;
  readonly qkvBias: Float32Array | undefined;
  /** `[hidden][numHeads·headDim]` */
  readonly o: Float32Array;
  readonly postAttentionNorm: Float32Array;
  /** `[2·intermediate][hidden]`: gate rows, then up. */
  readonly gateUp: Float32Array;
  readonly gateUpBias: Float32Array | undefined;
  /** `[hidden][intermediate]` */
  readonly down: Float32Array;
  readonly downBias: Float32Array | undefined;
}

/** Every tensor a Phi-3 / Llama-family decoder needs; `Layer` is each layer as the reader's caller laid it out. */
export interface DecoderWeights<Layer = DecoderLayerWeights> {
  /** `[vocab][hidden]` */
  readonly embed: Float32Array;
  readonly layers: readonly Layer[];
  readonly finalNorm: Float32Array;
  /** `[vocab][hidden]`; the embedding itself when tied. */
  readonly lmHead: Float32Array;
}

/** Where {@link readDecoderWeights} reads from: a `WeightStore`, or anything with its `get`. */
export type DecoderWeightSource = Pick<WeightStore, 'get'>;

/**
 * Reads every tensor the decoder needs from HF state-dict names, each shape checked by the store
 * (`WeightsError` `'missing-tensor'` / `'shape-mismatch'`). Phi-3 checkpoints have fused
 * `qkv_proj` / `gate_up_proj`; Llama-family ones have split projections, concatenated here so
 * every backend sees one layout.
 *
 * `prepareLayer` lays each layer out for its backend (transposed for a graph, copied into kernel
 * memory) as soon as it is read, so the checkpoint layout of only one layer is held at a time.
 * Tensors are read in a fixed order (layers, then embedding, LM head, final norm), which a caller
 * hashing what it reads relies on.
 */
export function readDecoderWeights(config: ModelConfig, store: DecoderWeightSource): DecoderWeights;
export function readDecoderWeights<Layer>(
  config: ModelConfig,
  store: DecoderWeightSource,
  prepareLayer: (weights: DecoderLayerWeights, layer: number) => Layer,
): DecoderWeights<Layer>;
export function readDecoderWeights<Layer>(
  config: ModelConfig,
  store: DecoderWeightSource,
  prepareLayer?: (weights: DecoderLayerWeights, layer: number) => Layer,
): DecoderWeights<Layer | DecoderLayerWeights> {
  const { hiddenSize: H, vocabSize: V } = config;
  const layers = Array.from({ length: config.numLayers }, (_, l) => {
    const w = readLayer(config, store, l);
    return prepareLayer ? prepareLayer(w, l) : w;
  });
  const embed = store.get('model.embed_tokens.weight', [V, H]);
  const lmHead = config.tieWordEmbeddings ? embed : store.get('lm_head.weight', [V, H]);
  const finalNorm = store.get('model.norm.weight', [H]);
  return { embed, layers, finalNorm, lmHead };
}

function readLayer(config: ModelConfig, store: DecoderWeightSource, l: number): DecoderLayerWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const get = (name: string, shape: readonly number[]) => store.get(`model.layers.${l}.${name}`, shape);
  const fused = config.family === 'phi3';
  const qkv = fused
    ? get('self_attn.qkv_proj.weight', [qDim + 2 * kvDim, H])
    : concat([get('self_attn.q_proj.weight', [qDim, H]), get('self_attn.k_proj.weight', [kvDim, H]), get('self_attn.v_proj.weight', [kvDim, H])]);
  const gateUp = fused
    ? get('mlp.gate_up_proj.weight', [2 * I, H])
    : concat([get('mlp.gate_proj.weight', [I, H]), get('mlp.up_proj.weight', [I, H])]);
  const mlpBias = config.mlpBias && !fused;
  return {
    inputNorm: get('input_layernorm.weight', [H]),
    qkv,
    qkvBias: config.attentionBias
      ? concat([get('self_attn.q_proj.bias', [qDim]), get('self_attn.k_proj.bias', [kvDim]), get('self_attn.v_proj.bias', [kvDim])])
      : undefined,
    o: get('self_attn.o_proj.weight', [H, qDim]),
    postAttentionNorm: get('post_attention_layernorm.weight', [H]),
    gateUp,
    gateUpBias: mlpBias ? concat([get('mlp.gate_proj.bias', [I]), get('mlp.up_proj.bias', [I])]) : undefined,
    down: get('mlp.down_proj.weight', [H, I]),
    downBias: mlpBias ? get('mlp.down_proj.bias', [H]) : undefined,
  };
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
