import { BackendError, CpuKvCache, type KvCacheLayout, rotateBlocks } from '@ropeswitch/core';
import { type AttentionOperands, attention } from './attention.js';
import type { DecoderKernels, KvStorage, LinearWeights } from './decoder-kernels.js';
import { matmul } from './matmul.js';
import { swiglu } from './swiglu.js';

/** A weight kept as given, `[outDim][inDim]`. */
class HeapLinear implements LinearWeights {
  constructor(
    readonly w: Float32Array,
    readonly outDim: number,
    readonly inDim: number,
    readonly bias: Float32Array | undefined,
  ) {}
}

/**
 * The plain TypeScript kernels on JS-heap `Float32Array`s (sums in float64): the readable
 * definition of what the WebAssembly kernels compute, and their correctness check.
 */
export class TypeScriptKernels implements DecoderKernels {
  readonly kind = 'typescript' as const;
  readonly storage: KvStorage = { allocate: (length) => ({ view: new Float32Array(length), free: () => undefined }) };
  readonly rotateBlocks = rotateBlocks;
  private scores = new Float64Array(0);

  createCache(layout: KvCacheLayout): CpuKvCache {
    return new CpuKvCache(layout);
  }

  /** Any CPU cache: its views are plain `Float32Array`s wherever they live. */
  accepts(): boolean {
    return true;
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  linear(w: Float32Array, outDim: number, inDim: number, bias?: Float32Array): LinearWeights {
    return new HeapLinear(w, outDim, inDim, bias);
  }

  matmul(x: Float32Array, rows: number, w: LinearWeights, y: Float32Array): void {
    if (!(w instanceof HeapLinear)) throw new BackendError('foreign-weights', 'these weights were not prepared by the TypeScript kernels');
    matmul(x, rows, w.inDim, w.w, w.outDim, y, w.bias);
  }

  /** The float32 `scores` scratch goes unused: four query rows at a time keep four rows of float64 scores here. */
  attention(...[q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out]: [...AttentionOperands, scores?: Float32Array]): void {
    if (this.scores.length < 4 * (past + n)) this.scores = new Float64Array(4 * (past + n));
    attention(q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out, this.scores);
  }

  swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void {
    swiglu(gateUp, rows, size, out);
  }

  addInPlace(x: Float32Array, y: Float32Array): void {
    for (let i = 0; i < x.length; i++) x[i]! += y[i]!;
  }

  dispose(): void {
    this.scores = new Float64Array(0);
  }
}
