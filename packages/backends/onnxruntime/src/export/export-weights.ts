import { type Hash, createHash } from 'node:crypto';
import { type DecoderWeightSource, type ModelConfig, type WeightStore, readDecoderWeights } from '@ropeswitch/core';

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
 * Reads every tensor the decoder needs (core's `readDecoderWeights`: HF state-dict names, shapes
 * checked) and lays them out for the graph, each layer as it is read. Copies everything: the store
 * may be closed afterwards.
 */
export function readExportWeights(config: ModelConfig, store: WeightStore): ExportWeights {
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const hash = createHash('sha256');
  const w = readDecoderWeights(config, digesting(store, hash), (lw): ExportLayerWeights => ({
    ...lw,
    qkv: transpose(lw.qkv, qDim + 2 * kvDim, H),
    o: transpose(lw.o, H, qDim),
    gateUp: transpose(lw.gateUp, 2 * I, H),
    down: transpose(lw.down, H, I),
  }));
  return { ...w, lmHead: transpose(w.lmHead, V, H), digest: hash.digest('hex') };
}

/** `store`, hashing every tensor read into `hash` (name, shape, float32 bytes, in read order). */
function digesting(store: WeightStore, hash: Hash): DecoderWeightSource {
  return {
    get(name, shape) {
      const t = store.get(name, shape);
      hash.update(`${name}:${(shape ?? []).join('x')};`);
      hash.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      return t;
    },
  };
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
