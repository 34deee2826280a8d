import type { CpuKvBlock, CpuKvCache, CpuKvStorage, KvCacheLayout, rotateBlocks } from '@ropeswitch/core';
import type { AttentionOperands } from './attention.js';

/** Where a `CpuKvCache` keeps its floats. */
export type KvStorage = CpuKvStorage;
/** A run of floats from a {@link KvStorage}; its `view` is re-derived on each read. */
export type KvBlock = CpuKvBlock;

/** Which kernels a reference backend computes with. */
export type ReferenceKernels = 'wasm' | 'typescript';

/** A weight matrix (HF Linear `[outDim][inDim]`) and its bias, prepared once by {@link DecoderKernels.linear}. */
export interface LinearWeights {
  readonly outDim: number;
  readonly inDim: number;
}

/**
 * The hot kernels of the decoder, behind one interface so the forward reads the same whichever
 * set computes it. Activations, caches and scratch are `Float32Array`s allocated from `storage`:
 * the TypeScript set uses the JS heap, the WebAssembly set its linear memory (the only memory its
 * code can read), so a forward moves no data in or out of it. Layouts are those of the TypeScript
 * kernels in this folder.
 */
export interface DecoderKernels {
  readonly kind: ReferenceKernels;
  /** Where activations (and this set's KV caches) live. */
  readonly storage: KvStorage;
  /** A cache whose storage these kernels can compute on. */
  createCache(layout: KvCacheLayout): CpuKvCache;
  /** Whether these kernels can compute on `cache`'s storage. */
  accepts(cache: CpuKvCache): boolean;
  /** Resolves once the kernels can run (the WebAssembly module compiles asynchronously). */
  ready(): Promise<void>;
  /** Prepares a weight matrix `[outDim][inDim]` and its optional bias `[outDim]` (copied or kept). */
  linear(w: Float32Array, outDim: number, inDim: number, bias?: Float32Array): LinearWeights;
  /** `y[t] = w·x[t] + bias` for `rows` rows: x `[rows][inDim]`, y `[rows][outDim]`. */
  matmul(x: Float32Array, rows: number, w: LinearWeights, y: Float32Array): void;
  /**
   * Causal attention of `n` query rows from row `qRow` (see {@link AttentionOperands}). `scores` is scratch of
   * at least `2·(past + n)` floats from `storage` (the TypeScript kernel keeps its own float64 scratch).
   */
  attention(...args: [...AttentionOperands, scores: Float32Array]): void;
  /** `up ⊙ silu(gate)` per row (see `swiglu.ts`). */
  swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void;
  /** `x += y`, element-wise. */
  addInPlace(x: Float32Array, y: Float32Array): void;
  /** Rotates head vectors in place, with the contract of core's `rotateBlocks` (used by `rerotateKeys`). */
  readonly rotateBlocks: typeof rotateBlocks;
  /** Lets go of the kernels' memory (caches made from it stay readable until disposed). */
  dispose(): void;
}
