import { createHash } from 'node:crypto';
import type { ModelConfig, WeightStore } from '@ropeswitch/core';

/**
 * One decoder layer's weights as the exported graph multiplies them: every projection transposed
 * to `[in][out]` (activations are `[token][in]`, so `MatMul(x, W)` needs no transpose at run time),
 * Phi-3 fused and Llama split checkpoints alike fused into one qkv and one gate_up matrix.
 */
export interface ExportLayerWeights {
  readonly inputNorm: Float32Array;
  /** `[hidden][q | k | v]` */
  readonly qkv: Float32Array;
  readonly qkvBias: Float32Array | undefined;
  /** `[numHeads·headDim][hidden]` */
  readonly o: Float32Array;
  readonly postAttentionNorm: Float32Array;
  /** `[hidden][gate | up]` */
  readonly gateUp: Float32Array;
  readonly gateUpBias: Float32Array | undefined;
  /** `[intermediate][hidden]` */
  readonly down: Float32Array;
  readonly downBias: Float32Array | undefined;
}

export interface ExportWeights {
  /** `[vocab][hidden]` (a Gather table) */
  readonly embed: Float32Array;
  readonly layers: readonly ExportLayerWeights[];
  readonly finalNorm: Float32Array;
  /** `[hidden][vocab]`: the (tied or own) lm head, transposed. */
  readonly lmHead: Float32Array;
  /** sha256 of every tensor read (names, shapes, float32 bytes), for the on-disk model cache key. */
  readonly digest: string;
}

/**
 * Reads every tensor the decoder needs (HF state-dict names, shapes checked by the store) and
 * lays them out for the graph. Copies everything: the store may be closed afterwards.
 */
export function readExportWeights(config: ModelConfig, store: WeightStore): ExportWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const hash = createHash('sha256');
  const get = (name: string, shape: number[]): Float32Array => {
    const t = store.get(name, shape);
    hash.update(`${name}:${shape.join('x')};`);
    hash.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
    return t;
  };
  const fused = config.family === 'phi3';
  const layers: ExportLayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const qkvRows = fused
      ? get(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H])
      : concat([get(`${p}.self_attn.q_proj.weight`, [qDim, H]), get(`${p}.self_attn.k_proj.weight`, [kvDim, H]), get(`${p}.self_attn.v_proj.weight`, [kvDim, H])]);
    const gateUpRows = fused
      ? get(`${p}.mlp.gate_up_proj.weight`, [2 * I, H])
      : concat([get(`${p}.mlp.gate_proj.weight`, [I, H]), get(`${p}.mlp.up_proj.weight`, [I, H])]);
    const mlpBias = config.mlpBias && !fused;
    layers.push({
      inputNorm: get(`${p}.input_layernorm.weight`, [H]),
      qkv: transpose(qkvRows, qDim + 2 * kvDim, H),
      qkvBias: config.attentionBias
        ? concat([get(`${p}.self_attn.q_proj.bias`, [qDim]), get(`${p}.self_attn.k_proj.bias`, [kvDim]), get(`${p}.self_attn.v_proj.bias`, [kvDim])])
        : undefined,
      o: transpose(get(`${p}.self_attn.o_proj.weight`, [H, qDim]), H, qDim),
      postAttentionNorm: get(`${p}.post_attention_layernorm.weight`, [H]),
      gateUp: transpose(gateUpRows, 2 * I, H),
      gateUpBias: mlpBias ? concat([get(`${p}.mlp.gate_proj.bias`, [I]), get(`${p}.mlp.up_proj.bias`, [I])]) : undefined,
      down: transpose(get(`${p}.mlp.down_proj.weight`, [H, I]), H, I),
      downBias: mlpBias ? get(`${p}.mlp.down_proj.bias`, [H]) : undefined,
    });
  }
  const embed = get('model.embed_tokens.weight', [V, H]);
  const lmHead = transpose(config.tieWordEmbeddings ? embed : get('lm_head.weight', [V, H]), V, H);
  const finalNorm = get('model.norm.weight', [H]);
  return { embed, layers, finalNorm, lmHead, digest: hash.digest('hex') };
}

/** `[rows][cols]` → `[cols][rows]`, in cache-friendly tiles. */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 32;
  for (let r0 = 0; r0 < rows; r0 += T) {
    const r1 = Math.min(rows, r0 + T);
    for (let c0 = 0; c0 < cols; c0 += T) {
      const c1 = Math.min(cols, c0 + T);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c]!;
    }
  }
  return out;
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
