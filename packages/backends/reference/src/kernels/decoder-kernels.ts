import type { CpuKvBlock, CpuKvCache, CpuKvStorage, KvCacheLayout, rotateBlocks } from '@ropeswitch/core';
import type { AttentionOperands } from './attention.js';
import type { WeightDtype } from './weight-dtype.js';

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
 * What a kernel call returns: nothing when it finished, or a promise when it still waits for
 * worker threads (the caller awaits it before reading the output).
 */
export type KernelCompletion = Promise<void> | undefined;

/**
 * Consecutive layers whose weights, caches and activations share one memory (the WebAssembly
 * kernels place groups of layers in separate memories past what one can hold); the LM head is in
 * the last group, which may hold no layer.
 */
export interface KernelGroup {
  readonly firstLayer: number;
  readonly endLayer: number;
  /** Where this group's activations are allocated. */
  readonly storage: KvStorage;
}

/**
 * The hot kernels of the decoder, behind one interface so the forward reads the same whichever
 * set computes it. Activations, caches and scratch are `Float32Array`s allocated from a group's
 * storage: the TypeScript set uses the JS heap, the WebAssembly set its linear memories (the only
 * memory its code can read), so a forward moves no data in or out of them but the hidden state
 * between groups. Layouts are those of the TypeScript kernels in this folder.
 */
export interface DecoderKernels {
  readonly kind: ReferenceKernels;
  /** How weight matrices are stored (see {@link WeightDtype}). */
  readonly weightDtype: WeightDtype;
  /** Threads a kernel call may use (the calling thread included). */
  readonly threads: number;
  /** What computes, for a backend's `deviceDescription`. */
  readonly description: string;
  /** Layer groups, in order, covering every layer; the LM head computes in the last one. */
  readonly groups: readonly KernelGroup[];
  /** A cache whose storage these kernels can compute on (each layer in its group's memory). */
  createCache(layout: KvCacheLayout): CpuKvCache;
  /** Whether these kernels can compute on `cache`'s storage. */
  accepts(cache: CpuKvCache): boolean;
  /** Resolves once the kernels can run (the WebAssembly module compiles, the worker threads start, asynchronously). */
  ready(): Promise<void>;
  /** Whether they can run now (so a forward need not await {@link ready}). */
  readonly loaded: boolean;
  /** Prepares a weight matrix `[outDim][inDim]` and its optional bias `[outDim]` in group `group`'s memory (copied, converted or kept). */
  linear(w: Float32Array, outDim: number, inDim: number, bias: Float32Array | undefined, group: number, name: string): LinearWeights;
  /**
   * Makes sure group `group` has the scratch a forward over sequences of up to `longest` tokens
   * needs. Allocates: call it before taking any view.
   */
  reserveScratch(group: number, longest: number): void;
  /** `y[t] = w·x[t] + bias` for `rows` rows: x `[rows][inDim]`, y `[rows][outDim]`. */
  matmul(x: Float32Array, rows: number, w: LinearWeights, y: Float32Array): KernelCompletion;
  /** Causal attention of `n` query rows from row `qRow` (see {@link AttentionOperands}), scores in the reserved scratch. */
  attention(...args: AttentionOperands): KernelCompletion;
  /** `up ⊙ silu(gate)` per row (see `swiglu.ts`). */
  swiglu(gateUp: Float32Array, rows: number, size: number, out: Float32Array): void;
  /** `x[i] += y[i]` for i < n. */
  addInPlace(x: Float32Array, y: Float32Array, n: number): void;
  /** Rotates head vectors in place, with the contract of core's `rotateBlocks` (used by `rerotateKeys`). */
  readonly rotateBlocks: typeof rotateBlocks;
  /** Lets go of the kernels' memory and threads (caches made from it stay readable until disposed). */
  dispose(): Promise<void>;
}
