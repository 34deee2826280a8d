import type { ModelConfig } from '@ropeswitch/core';

/** What a tensor of a decoder checkpoint is, which sets how a random one is drawn. */
export type DecoderTensorRole = 'embedding' | 'matrix' | 'bias' | 'norm' | 'lm-head';

/** One tensor of an HF decoder state dict. */
export interface DecoderTensor {
  readonly name: string;
  /** Row-major, HF `[out][in]` for projections. */
  readonly shape: readonly number[];
  readonly role: DecoderTensorRole;
  /** Inputs each output sums over (a projection's `in`); 1 for vectors. */
  readonly fanIn: number;
}

/**
 * Every tensor of an HF Phi-3 (fused `qkv_proj` / `gate_up_proj`) or Llama-family (split
 * projections, optional biases) checkpoint for `config`, in the order the random checkpoints draw
 * them: the embedding, each layer, the final norm, then `lm_head` unless tied.
 */
export function decoderTensors(config: ModelConfig): DecoderTensor[] {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const out: DecoderTensor[] = [];
  const matrix = (name: string, rows: number, cols: number) => out.push({ name, shape: [rows, cols], role: 'matrix', fanIn: cols });
  const vector = (name: string, size: number, role: 'bias' | 'norm') => out.push({ name, shape: [size], role, fanIn: 1 });
  const split = config.family !== 'phi3';

  out.push({ name: 'model.embed_tokens.weight', shape: [V, H], role: 'embedding', fanIn: H });
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    vector(`${p}.input_layernorm.weight`, H, 'norm');
    if (split) {
      matrix(`${p}.self_attn.q_proj.weight`, qDim, H);
      matrix(`${p}.self_attn.k_proj.weight`, kvDim, H);
      matrix(`${p}.self_attn.v_proj.weight`, kvDim, H);
    } else {
      matrix(`${p}.self_attn.qkv_proj.weight`, qDim + 2 * kvDim, H);
    }
    if (config.attentionBias) {
      vector(`${p}.self_attn.q_proj.bias`, qDim, 'bias');
      vector(`${p}.self_attn.k_proj.bias`, kvDim, 'bias');
      vector(`${p}.self_attn.v_proj.bias`, kvDim, 'bias');
    }
    matrix(`${p}.self_attn.o_proj.weight`, H, qDim);
    vector(`${p}.post_attention_layernorm.weight`, H, 'norm');
    if (split) {
      matrix(`${p}.mlp.gate_proj.weight`, I, H);
      matrix(`${p}.mlp.up_proj.weight`, I, H);
      if (config.mlpBias) {
        vector(`${p}.mlp.gate_proj.bias`, I, 'bias');
        vector(`${p}.mlp.up_proj.bias`, I, 'bias');
      }
    } else {
      matrix(`${p}.mlp.gate_up_proj.weight`, 2 * I, H);
    }
    matrix(`${p}.mlp.down_proj.weight`, H, I);
    if (split && config.mlpBias) vector(`${p}.mlp.down_proj.bias`, H, 'bias');
  }
  vector('model.norm.weight', H, 'norm');
  if (!config.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, H], role: 'lm-head', fanIn: H });
  return out;
}
