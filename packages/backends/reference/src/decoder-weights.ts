import type { ModelConfig, WeightStore } from '@ropeswitch/core';

/** One decoder layer, with projections fused the Phi-3 way whatever the checkpoint's layout. */
export interface LayerWeights {
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

export interface DecoderWeights {
  /** `[vocab][hidden]` */
  readonly embed: Float32Array;
  readonly layers: readonly LayerWeights[];
  readonly finalNorm: Float32Array;
  /** `[vocab][hidden]`; the embedding itself when tied. */
  readonly lmHead: Float32Array;
}

/**
 * Reads every tensor the decoder needs from HF state-dict names, checking each shape. Phi-3
 * checkpoints have fused `qkv_proj` / `gate_up_proj`; Llama-family ones have split projections,
 * which are concatenated here so one matmul serves both layouts.
 */
export function readDecoderWeights(config: ModelConfig, store: WeightStore): DecoderWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const embed = store.get('model.embed_tokens.weight', [vocabSize, H]);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const fused = config.family === 'phi3';
    const qkv = fused
      ? store.get(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H])
      : concat([
          store.get(`${p}.self_attn.q_proj.weight`, [qDim, H]),
          store.get(`${p}.self_attn.k_proj.weight`, [kvDim, H]),
          store.get(`${p}.self_attn.v_proj.weight`, [kvDim, H]),
        ]);
    const qkvBias = config.attentionBias
      ? concat([
          store.get(`${p}.self_attn.q_proj.bias`, [qDim]),
          store.get(`${p}.self_attn.k_proj.bias`, [kvDim]),
          store.get(`${p}.self_attn.v_proj.bias`, [kvDim]),
        ])
      : undefined;
    const gateUp = fused
      ? store.get(`${p}.mlp.gate_up_proj.weight`, [2 * I, H])
      : concat([store.get(`${p}.mlp.gate_proj.weight`, [I, H]), store.get(`${p}.mlp.up_proj.weight`, [I, H])]);
    const mlpBias = config.mlpBias && !fused;
    layers.push({
      inputNorm: store.get(`${p}.input_layernorm.weight`, [H]),
      qkv,
      qkvBias,
      o: store.get(`${p}.self_attn.o_proj.weight`, [H, qDim]),
      postAttentionNorm: store.get(`${p}.post_attention_layernorm.weight`, [H]),
      gateUp,
      gateUpBias: mlpBias
        ? concat([store.get(`${p}.mlp.gate_proj.bias`, [I]), store.get(`${p}.mlp.up_proj.bias`, [I])])
        : undefined,
      down: store.get(`${p}.mlp.down_proj.weight`, [H, I]),
      downBias: mlpBias ? store.get(`${p}.mlp.down_proj.bias`, [H]) : undefined,
    });
  }
  const lmHead = config.tieWordEmbeddings ? embed : store.get('lm_head.weight', [vocabSize, H]);
  return { embed, layers, finalNorm: store.get('model.norm.weight', [H]), lmHead };
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
