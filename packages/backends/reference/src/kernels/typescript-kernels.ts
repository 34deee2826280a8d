import { BackendError, CpuKvCache, type KvCacheLayout, rotateBlocks } from '@ropeswitch/core';
import { type AttentionOperands, attention } from './attention.js';
import type { DecoderKernels, KernelCompletion, KernelGroup, KvStorage, LinearWeights } from './decoder-kernels.js';
import { matmul } from './matmul.js';
import { swiglu } from './swiglu.js';
import { type WeightDtype, roundWeights } from './weight-dtype.js';

/** A weight kept as given (or rounded through the weight dtype), `[outDim][inDim]`. */
class HeapLinear implements LinearWeights {
  constructor(
    readonly w: Float32Array,
    readonly outDim: number,
    readonly inDim: number,
    readonly bias: Float32Array | undefined,
  ) {}
}

const heap: KvStorage = { allocate: (length) => ({ view: new Float32Array(length), free: () => undefined }) };

/**
 * The plain TypeScript kernels on JS-heap `Float32Array`s (sums in float64), one thread: the
 * readable definition of what the WebAssembly kernels compute, and their correctness check. With a
 * weight dtype other than float32 they compute on the weights rounded through it (float32 arrays:
 * the same numbers as the WebAssembly kernels, not their memory saving).
 */
export class TypeScriptKernels implements DecoderKernels {
  readonly kind = 'typescript' as const;
  readonly threads = 1;
  readonly description: string;
  readonly groups: readonly KernelGroup[];
  readonly rotateBlocks = rotateBlocks;
  readonly loaded = true;
  private scores = new Float64Array(0);

  constructor(
    numLayers: number,
    readonly weightDtype: WeightDtype = 'float32',
  ) {
    this.groups = [{ firstLayer: 0, endLayer: numLayers, storage: heap }];
    this.description = `CPU, TypeScript kernels, 1 thread, ${weightDtype} weights`;
  }

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
    return new HeapLinear(roundWeights(this.weightDtype, w, outDim, inDim), outDim, inDim, bias);
  }

  /** Four query rows at a time keep four rows of float64 scores here. */
  reserveScratch(_group: number, longest: number): void {
    if (this.scores.length < 4 * longest) this.scores = new Float64Array(4 * longest);
  }

  matmul(x: Float32Array, rows: number, w: LinearWeights, y: Float32Array): KernelCompletion {
    if (!(w instanceof HeapLinear)) throw new BackendError('foreign-weights', 'these weights were not prepared by the TypeScript kernels');
    matmul(x, rows, w.inDim, w.w, w.outDim, y, w.bias);
    return undefined;
  }

  attention(...[q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out]: AttentionOperands): KernelCompletion {
    this.reserveScratch(0, past + n);
    attention(q, qRow, n, past, keys, values, capacity, numHeads, numKvHeads, headDim, out, this.scores);
    return undefined;
  }

  swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void {
    swiglu(gateUp, rows, size, out);
  }

  addInPlace(x: Float32Array, y: Float32Array, n: number): void {
    for (let i = 0; i < n; i++) x[i]! += y[i]!;
  }

  async dispose(): Promise<void> {
    this.scores = new Float64Array(0);
  }
}
