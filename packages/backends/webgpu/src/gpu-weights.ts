/// <reference types="@webgpu/types" />
import { BackendError, type ModelConfig } from '@ropeswitch/core';
import { splitIntoBlocks } from './binding-blocks.js';
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
  readonly embed: DeviceMatrix;
  readonly layers: readonly GpuLayerWeights[];
  readonly finalNorm: GPUBuffer;
  /** `[vocab][hidden]`; the embedding matrix itself when tied. */
  readonly lmHead: DeviceMatrix;
  /** Bytes uploaded. */
  readonly byteLength: number;
  /** Every distinct buffer, for `dispose`. */
  readonly buffers: readonly GPUBuffer[];
  /** Buffers each matrix was cut into, by tensor name (1 where it fits one binding). */
  readonly matrixBlocks: ReadonlyMap<string, number>;
}

/**
 * Uploads every tensor the decoder needs, read from HF state-dict names with their shapes checked
 * (the reference backend's names and checks). Phi-3's fused `qkv_proj` / `gate_up_proj` are used
 * as they are; Llama-family split projections are concatenated on upload, so one matmul serves both.
 * Each matrix is cut into row blocks of at most `maxBindingBytes` (see {@link DeviceMatrix}).
 * @throws BackendError `'tensor-too-large'` when one row of a matrix or a whole vector exceeds
 * `maxBindingBytes`; `'out-of-memory'` when the device cannot allocate a buffer (naming the tensor).
 */
export function uploadDecoderWeights(device: GPUDevice, config: ModelConfig, store: WeightSource, maxBindingBytes: number): GpuDecoderWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const buffers: GPUBuffer[] = [];
  const matrixBlocks = new Map<string, number>();
  let byteLength = 0;
  /** A buffer holding `floats` floats [from, from + floats) of the concatenated `parts`. */
  const upload = (name: string, parts: readonly Float32Array[], from: number, floats: number): GPUBuffer => {
    let buffer: GPUBuffer;
    try {
      buffer = device.createBuffer({ size: Math.max(16, floats * 4), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC, mappedAtCreation: true, label: name });
    } catch (error) {
      throw new BackendError('out-of-memory', `${name}: the device could not allocate ${floats * 4} bytes (${byteLength} bytes of weights uploaded before it)`, { cause: error });
    }
    buffers.push(buffer);
    copyRange(parts, from, floats, new Float32Array(buffer.getMappedRange(), 0, floats));
    buffer.unmap();
    byteLength += floats * 4;
    return buffer;
  };
  const vector = (name: string, parts: readonly Float32Array[]): GPUBuffer => {
    const floats = parts.reduce((n, p) => n + p.length, 0);
    if (floats * 4 > maxBindingBytes) {
      throw new BackendError('tensor-too-large', `${name}: ${floats * 4} bytes, over this device's storage binding size (${maxBindingBytes} bytes)`);
    }
    return upload(name, parts, 0, floats);
  };
  /** A matrix from row blocks stacked along the output dim (fused or concatenated projections). */
  const matrix = (name: string, parts: readonly Float32Array[], inDim: number): DeviceMatrix => {
    const outDim = parts.reduce((n, p) => n + p.length, 0) / inDim;
    const split = splitIntoBlocks(outDim, inDim * 4, maxBindingBytes, ROW_GRANULE);
    if (!split) {
      throw new BackendError('tensor-too-large', `${name}: one row is ${inDim * 4} bytes, over this device's storage binding size (${maxBindingBytes} bytes)`);
    }
    const blocks = split.map(({ first, count }) => ({ buffer: upload(`${name} rows ${first}+${count}`, parts, first * inDim, count * inDim), first, rows: count }));
    matrixBlocks.set(name, blocks.length);
    return { blocks, inDim, outDim };
  };
  try {
    const get = (name: string, shape: readonly number[]) => store.get(name, shape);
    const embedName = 'model.embed_tokens.weight';
    const embed = matrix(embedName, [get(embedName, [vocabSize, H])], H);
    const layers: GpuLayerWeights[] = [];
    const fused = config.family === 'phi3';
    for (let l = 0; l < config.numLayers; l++) {
      const p = `model.layers.${l}`;
      const a = `${p}.self_attn`;
      const qkv = fused
        ? matrix(`${a}.qkv_proj.weight`, [get(`${a}.qkv_proj.weight`, [qDim + 2 * kvDim, H])], H)
        : matrix(`${a}.{q,k,v}_proj.weight`, [get(`${a}.q_proj.weight`, [qDim, H]), get(`${a}.k_proj.weight`, [kvDim, H]), get(`${a}.v_proj.weight`, [kvDim, H])], H);
      const qkvBias = config.attentionBias
        ? vector(`${a}.{q,k,v}_proj.bias`, [get(`${a}.q_proj.bias`, [qDim]), get(`${a}.k_proj.bias`, [kvDim]), get(`${a}.v_proj.bias`, [kvDim])])
        : undefined;
      const m = `${p}.mlp`;
      const gateUp = fused
        ? matrix(`${m}.gate_up_proj.weight`, [get(`${m}.gate_up_proj.weight`, [2 * I, H])], H)
        : matrix(`${m}.{gate,up}_proj.weight`, [get(`${m}.gate_proj.weight`, [I, H]), get(`${m}.up_proj.weight`, [I, H])], H);
      const mlpBias = config.mlpBias && !fused;
      const named = (name: string, shape: readonly number[]) => vector(name, [get(name, shape)]);
      layers.push({
        inputNorm: named(`${p}.input_layernorm.weight`, [H]),
        qkv,
        qkvBias,
        o: matrix(`${a}.o_proj.weight`, [get(`${a}.o_proj.weight`, [H, qDim])], qDim),
        postAttentionNorm: named(`${p}.post_attention_layernorm.weight`, [H]),
        gateUp,
        gateUpBias: mlpBias ? vector(`${m}.{gate,up}_proj.bias`, [get(`${m}.gate_proj.bias`, [I]), get(`${m}.up_proj.bias`, [I])]) : undefined,
        down: matrix(`${m}.down_proj.weight`, [get(`${m}.down_proj.weight`, [H, I])], I),
        downBias: mlpBias ? named(`${m}.down_proj.bias`, [H]) : undefined,
      });
    }
    const lmHead = config.tieWordEmbeddings ? embed : matrix('lm_head.weight', [get('lm_head.weight', [vocabSize, H])], H);
    const finalNorm = vector('model.norm.weight', [get('model.norm.weight', [H])]);
    return { embed, layers, finalNorm, lmHead, byteLength, buffers, matrixBlocks };
  } catch (error) {
    // A missing or misshapen tensor, or one the device cannot hold: free what was uploaded before rethrowing.
    for (const b of buffers) b.destroy();
    throw error;
  }
}

/** Rows of a matrix block share a granule of the matmul kernels' tiles (32 rows), so blocks split no tile. */
const ROW_GRANULE = 32;

/** Copies floats [from, from + target.length) of the concatenation of `parts` into `target`. */
function copyRange(parts: readonly Float32Array[], from: number, floats: number, target: Float32Array): void {
  let base = 0;
  let at = 0;
  for (const p of parts) {
    const a = Math.max(from, base);
    const b = Math.min(from + floats, base + p.length);
    if (a < b) {
      target.set(p.subarray(a - base, b - base), at);
      at += b - a;
    }
    base += p.length;
  }
}
