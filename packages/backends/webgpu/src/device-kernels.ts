/// <reference types="@webgpu/types" />
import type { CommandRecorder } from './command-recorder.js';
import type { DeviceMatrix } from './device-matrix.js';
import type { KernelSetName } from './kernel-set.js';
import { MAX_ATTENTION_HEAD_DIM } from './kernels/attention.js';
import { ELEMENTWISE_WORKGROUP } from './kernels/elementwise.js';
import { TILE } from './kernels/matmul-tiled.js';
import { REGISTER_BLOCKED_WORKGROUP } from './kernels/matmul-register-blocked.js';
import { type Pipelines, attentionPerQueryPipeline } from './pipelines.js';

/** Attention over one row's cache: see `ATTENTION_WORKGROUP_WGSL` for the layouts. */
export interface AttentionShape {
  readonly n: number;
  /** First token of the row in the forward's activations. */
  readonly start: number;
  readonly past: number;
  readonly capacity: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Elements between token rows of q (the fused projection's width). */
  readonly qStride: number;
}

const groupsOf = (invocations: number, perGroup: number) => Math.ceil(invocations / perGroup);

/**
 * Records each kernel with its parameters; the one place that knows each kernel's bindings and
 * grid. Buffers are float32 unless named otherwise.
 */
export class DeviceKernels {
  /** Per-query attention pipelines by head dim (the head dim is baked into the shader). */
  private readonly attentionByHeadDim = new Map<number, GPUComputePipeline>();

  constructor(
    private readonly device: GPUDevice,
    private readonly pipelines: Pipelines,
    /** The kernel set; register-blocked kernels fall back to the tiled/workgroup ones where a dimension is not a multiple of 4. */
    readonly kernelSet: KernelSetName,
    /** A 16-byte zeroed storage buffer bound where a kernel has nothing to read (no bias, no row map). */
    private readonly empty: GPUBuffer,
  ) {}

  /** `x[t] = embed[ids[t]]` (ids u32). */
  embed(rec: CommandRecorder, ids: GPUBuffer, embed: GPUBuffer, x: GPUBuffer, tokens: number, hidden: number): void {
    const count = tokens * hidden;
    rec.dispatch(this.pipelines.embed, [count, hidden], [ids, embed, x], groupsOf(count, ELEMENTWISE_WORKGROUP));
  }

  rmsNorm(rec: CommandRecorder, x: GPUBuffer, weight: GPUBuffer, out: GPUBuffer, rows: number, dim: number, eps: number): void {
    rec.dispatch(this.pipelines.rmsNorm, [rows, dim, { f32: eps }], [x, weight, out], rows);
  }

  /** `y = x · wᵀ (+ bias)`: x `[rows][inDim]`, y `[rows][outDim]`; register-blocked needs inDim % 4 = 0, else tiled runs. */
  matmul(rec: CommandRecorder, x: GPUBuffer, rows: number, w: DeviceMatrix, y: GPUBuffer, bias?: GPUBuffer): void {
    const b = bias ?? this.empty;
    const hasBias = bias ? 1 : 0;
    const { inDim, outDim } = w;
    if (this.kernelSet === 'register-blocked' && inDim % 4 === 0) {
      const blocks = Math.ceil(rows / 4) * Math.ceil(outDim / 4);
      rec.dispatch(this.pipelines.matmulRegisterBlocked, [rows, inDim / 4, outDim, hasBias], [x, w.buffer, b, y], groupsOf(blocks, REGISTER_BLOCKED_WORKGROUP));
    } else {
      const outTiles = Math.ceil(outDim / TILE);
      rec.dispatch(this.pipelines.matmulTiled, [rows, inDim, outDim, hasBias, outTiles], [x, w.buffer, b, y], Math.ceil(rows / TILE) * outTiles);
    }
  }

  /**
   * Rotates the q and k heads of `tokens` rows of the fused projection `[token][q | k | v]` in
   * place, token t by table row t (`cos`/`sin` `[token][half]`).
   */
  rotaryHeads(rec: CommandRecorder, qkv: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, tokens: number, heads: number, headDim: number, half: number, qkvDim: number, interleaved: boolean): void {
    const vectors = tokens * heads;
    const pairs = this.rotaryPairs(half);
    rec.dispatch(
      this.pipelines.rotary,
      [vectors, heads, qkvDim, headDim, 0, half, interleaved ? 1 : 0, 0, pairs],
      [qkv, cos, sin, this.empty],
      groupsOf(vectors * Math.ceil(half / pairs), ELEMENTWISE_WORKGROUP),
    );
  }

  /**
   * Rotates cached keys at indices [start, start + count) of one layer (`[kvHead][index][headDim]`,
   * `capacity` per head) in place, index start + k by table row `rows[k]` (u32).
   */
  rotateCacheSpan(rec: CommandRecorder, keys: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, rows: GPUBuffer, start: number, count: number, capacity: number, numKvHeads: number, headDim: number, half: number, interleaved: boolean): void {
    const vectors = count * numKvHeads;
    const pairs = this.rotaryPairs(half);
    rec.dispatch(
      this.pipelines.rotary,
      [vectors, numKvHeads, headDim, capacity * headDim, start * headDim, half, interleaved ? 1 : 0, 1, pairs],
      [keys, cos, sin, rows],
      groupsOf(vectors * Math.ceil(half / pairs), ELEMENTWISE_WORKGROUP),
    );
  }

  /** Writes a row's new keys and values (tokens start … start + n − 1 of `qkv`) at cache indices past …. */
  kvWrite(rec: CommandRecorder, qkv: GPUBuffer, keys: GPUBuffer, values: GPUBuffer, s: { n: number; start: number; past: number; capacity: number; numKvHeads: number; headDim: number; qkvDim: number; qDim: number }): void {
    const count = s.n * s.numKvHeads * s.headDim;
    rec.dispatch(this.pipelines.kvWrite, [s.n, s.start, s.past, s.capacity, s.numKvHeads, s.headDim, s.qkvDim, s.qDim], [qkv, keys, values], groupsOf(count, ELEMENTWISE_WORKGROUP));
  }

  /** Pairs per rotary invocation: a whole vector on software adapters, one pair on GPUs. */
  private rotaryPairs(half: number): number {
    return this.kernelSet === 'register-blocked' ? Math.max(1, half) : 1;
  }

  /**
   * Causal attention of one row; writes `out[start + t][head·headDim]` (row stride numHeads·headDim).
   * One invocation per query and head with the register-blocked set, a workgroup per query and head
   * with the tiled set.
   */
  attention(rec: CommandRecorder, q: GPUBuffer, keys: GPUBuffer, values: GPUBuffer, out: GPUBuffer, s: AttentionShape): void {
    const params = [s.n, s.start, s.past, s.capacity, s.numHeads, s.numHeads / s.numKvHeads, s.headDim, s.qStride, s.numHeads * s.headDim, { f32: 1 / Math.sqrt(s.headDim) }];
    if (this.kernelSet === 'register-blocked' && s.headDim % 4 === 0 && s.qStride % 4 === 0 && s.headDim <= MAX_ATTENTION_HEAD_DIM) {
      let pipeline = this.attentionByHeadDim.get(s.headDim);
      if (!pipeline) {
        pipeline = attentionPerQueryPipeline(this.device, s.headDim);
        this.attentionByHeadDim.set(s.headDim, pipeline);
      }
      rec.dispatch(pipeline, params, [q, keys, values, out], groupsOf(s.n * s.numHeads, 64));
    } else {
      rec.dispatch(this.pipelines.attentionWorkgroup, params, [q, keys, values, out], s.n * s.numHeads);
    }
  }

  /** `act = up ⊙ silu(gate)` from `[row][gate | up]`. */
  swiglu(rec: CommandRecorder, gateUp: GPUBuffer, act: GPUBuffer, rows: number, size: number): void {
    const count = rows * size;
    rec.dispatch(this.pipelines.swiglu, [count, size], [gateUp, act], groupsOf(count, ELEMENTWISE_WORKGROUP));
  }

  /** `x += y` over `count` elements. */
  add(rec: CommandRecorder, x: GPUBuffer, y: GPUBuffer, count: number): void {
    rec.dispatch(this.pipelines.add, [count], [y, x], groupsOf(count, ELEMENTWISE_WORKGROUP));
  }
}
