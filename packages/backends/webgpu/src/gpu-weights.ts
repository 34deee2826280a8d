/// <reference types="@webgpu/types" />
import type { ModelConfig } from '@ropeswitch/core';
import type { DeviceMatrix } from './device-matrix.js';
import { BufferUsage } from './gpu-flags.js';
import type { WeightSource } from './weight-source.js';

/** One decoder layer on the device, projections fused the Phi-3 way whatever the checkpoint's layout. */
export interface GpuLayerWeights {
  readonly inputNorm: GPUBuffer;
  /** `[(numHeads + 2·numKvHeads)·headDim][hidden]`: q rows, then k, then v. */
  readonly qkv: DeviceMatrix;
  readonly qkvBias: GPUBuffer | undefined;
  /** `[hidden][numHeads·headDim]` */
  readonly o: DeviceMatrix;
  readonly postAttentionNorm: GPUBuffer;
  /** `[2·intermediate][hidden]`: gate rows, then up. */
  readonly gateUp: DeviceMatrix;
  readonly gateUpBias: GPUBuffer | undefined;
  /** `[hidden][intermediate]` */
  readonly down: DeviceMatrix;
  readonly downBias: GPUBuffer | undefined;
}

export interface GpuDecoderWeights {
  /** `[vocab][hidden]` */
  readonly embed: GPUBuffer;
  readonly layers: readonly GpuLayerWeights[];
  readonly finalNorm: GPUBuffer;
  /** `[vocab][hidden]`; the embedding buffer itself when tied. */
  readonly lmHead: DeviceMatrix;
  /** Bytes uploaded. */
  readonly byteLength: number;
  /** Every distinct buffer, for `dispose`. */
  readonly buffers: readonly GPUBuffer[];
}

/**
 * Uploads every tensor the decoder needs, read from HF state-dict names with their shapes checked
 * (the reference backend's names and checks). Phi-3's fused `qkv_proj` / `gate_up_proj` are used
 * as they are; Llama-family split projections are concatenated on upload, so one matmul serves both.
 */
export function uploadDecoderWeights(device: GPUDevice, config: ModelConfig, store: WeightSource): GpuDecoderWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const buffers: GPUBuffer[] = [];
  let byteLength = 0;
  const upload = (parts: Float32Array[]): GPUBuffer => {
    const length = parts.reduce((n, p) => n + p.length, 0);
    const buffer = device.createBuffer({ size: Math.max(16, length * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC, mappedAtCreation: true });
    const view = new Float32Array(buffer.getMappedRange());
    let at = 0;
    for (const p of parts) {
      view.set(p, at);
      at += p.length;
    }
    buffer.unmap();
    buffers.push(buffer);
    byteLength += length * 4;
    return buffer;
  };
  try {
    const get = (name: string, shape: readonly number[]) => store.get(name, shape);
  /** A matrix from row blocks stacked along the output dim (fused or concatenated projections). */
  const matrix = (parts: Float32Array[], inDim: number): DeviceMatrix => {
    const outDim = parts.reduce((n, p) => n + p.length, 0) / inDim;
    return { buffer: upload(parts), inDim, outDim };
  };
    const embed = upload([get('model.embed_tokens.weight', [vocabSize, H])]);
    const layers: GpuLayerWeights[] = [];
    const fused = config.family === 'phi3';
    for (let l = 0; l < config.numLayers; l++) {
      const p = `model.layers.${l}`;
      const qkv = fused
        ? matrix([get(`${p}.self_attn.qkv_proj.weight`, [qDim + 2 * kvDim, H])], H)
        : matrix([get(`${p}.self_attn.q_proj.weight`, [qDim, H]), get(`${p}.self_attn.k_proj.weight`, [kvDim, H]), get(`${p}.self_attn.v_proj.weight`, [kvDim, H])], H);
      const qkvBias = config.attentionBias
        ? upload([get(`${p}.self_attn.q_proj.bias`, [qDim]), get(`${p}.self_attn.k_proj.bias`, [kvDim]), get(`${p}.self_attn.v_proj.bias`, [kvDim])])
        : undefined;
      const gateUp = fused
        ? matrix([get(`${p}.mlp.gate_up_proj.weight`, [2 * I, H])], H)
        : matrix([get(`${p}.mlp.gate_proj.weight`, [I, H]), get(`${p}.mlp.up_proj.weight`, [I, H])], H);
      const mlpBias = config.mlpBias && !fused;
      layers.push({
        inputNorm: upload([get(`${p}.input_layernorm.weight`, [H])]),
        qkv,
        qkvBias,
        o: matrix([get(`${p}.self_attn.o_proj.weight`, [H, qDim])], qDim),
        postAttentionNorm: upload([get(`${p}.post_attention_layernorm.weight`, [H])]),
        gateUp,
        gateUpBias: mlpBias ? upload([get(`${p}.mlp.gate_proj.bias`, [I]), get(`${p}.mlp.up_proj.bias`, [I])]) : undefined,
        down: matrix([get(`${p}.mlp.down_proj.weight`, [H, I])], I),
        downBias: mlpBias ? upload([get(`${p}.mlp.down_proj.bias`, [H])]) : undefined,
      });
    }
    const lmHead: DeviceMatrix = config.tieWordEmbeddings ? { buffer: embed, inDim: H, outDim: vocabSize } : matrix([get('lm_head.weight', [vocabSize, H])], H);
    const finalNorm = upload([get('model.norm.weight', [H])]);
    return { embed, layers, finalNorm, lmHead, byteLength, buffers };
  } catch (error) {
    // A missing or misshapen tensor: free what was uploaded before rethrowing.
    for (const b of buffers) b.destroy();
    throw error;
  }
}
