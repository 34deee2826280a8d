/// <reference types="@webgpu/types" />
import type { CommandRecorder } from './command-recorder.js';
import type { DeviceMatrix, MatrixBlock } from './device-matrix.js';
import type { KvHeadBlock } from './gpu-kv-cache.js';
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
 * grid. Buffers are float32 unless named otherwise. Weights and cache layers come as blocks that
 * each fit one storage binding ({@link DeviceMatrix}, {@link KvHeadBlock}): one dispatch per block,
 * the same arithmetic per output whatever the split, so a split changes no result.
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

  /** `x[t] = embed[ids[t]]` (ids u32), a dispatch per row block of the table. */
  embed(rec: CommandRecorder, ids: GPUBuffer, embed: DeviceMatrix, x: GPUBuffer, tokens: number): void {
    const hidden = embed.inDim;
    const count = tokens * hidden;
    for (const b of embed.blocks) {
      rec.dispatch(this.pipelines.embed, [count, hidden, b.first, b.rows], [ids, b.buffer, x], groupsOf(count, ELEMENTWISE_WORKGROUP));
    }
  }

  rmsNorm(rec: CommandRecorder, x: GPUBuffer, weight: GPUBuffer, out: GPUBuffer, rows: number, dim: number, eps: number): void {
    rec.dispatch(this.pipelines.rmsNorm, [rows, dim, { f32: eps }], [x, weight, out], rows);
  }

  /**
   * `y = x · wᵀ (+ bias)`: x `[rows][inDim]`, y `[rows][outDim]`, a dispatch per row block of `w`
   * (each writes its columns of y); register-blocked needs inDim % 4 = 0, else tiled runs.
   */
  matmul(rec: CommandRecorder, x: GPUBuffer, rows: number, w: DeviceMatrix, y: GPUBuffer, bias?: GPUBuffer): void {
    for (const block of w.blocks) this.matmulBlock(rec, x, rows, w, block, y, bias);
  }

  private matmulBlock(rec: CommandRecorder, x: GPUBuffer, rows: number, w: DeviceMatrix, block: MatrixBlock, y: GPUBuffer, bias: GPUBuffer | undefined): void {
    const b = bias ?? this.empty;
    const hasBias = bias ? 1 : 0;
    const { inDim } = w;
    const outDim = block.rows;
    if (this.kernelSet === 'register-blocked' && inDim % 4 === 0) {
      const blocks = Math.ceil(rows / 4) * Math.ceil(outDim / 4);
      rec.dispatch(this.pipelines.matmulRegisterBlocked, [rows, inDim / 4, outDim, hasBias, w.outDim, block.first], [x, block.buffer, b, y], groupsOf(blocks, REGISTER_BLOCKED_WORKGROUP));
    } else {
      const outTiles = Math.ceil(outDim / TILE);
      rec.dispatch(this.pipelines.matmulTiled, [rows, inDim, outDim, hasBias, outTiles, w.outDim, block.first], [x, block.buffer, b, y], Math.ceil(rows / TILE) * outTiles);
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
   * Rotates cached keys at indices [start, start + count) of one layer (blocks of
   * `[kvHead][index][headDim]`, `capacity` per head) in place, index start + k by table row
   * `rows[k]` (u32).
   */
  rotateCacheSpan(rec: CommandRecorder, keys: readonly KvHeadBlock[], cos: GPUBuffer, sin: GPUBuffer, rows: GPUBuffer, start: number, count: number, capacity: number, headDim: number, half: number, interleaved: boolean): void {
    const pairs = this.rotaryPairs(half);
    for (const block of keys) {
      const vectors = count * block.heads;
      rec.dispatch(
        this.pipelines.rotary,
        [vectors, block.heads, headDim, capacity * headDim, start * headDim, half, interleaved ? 1 : 0, 1, pairs],
        [block.buffer, cos, sin, rows],
        groupsOf(vectors * Math.ceil(half / pairs), ELEMENTWISE_WORKGROUP),
      );
    }
  }

  /** Writes a row's new keys and values (tokens start … start + n − 1 of `qkv`) at cache indices past …, a dispatch per head block. */
  kvWrite(rec: CommandRecorder, qkv: GPUBuffer, keys: readonly KvHeadBlock[], values: readonly KvHeadBlock[], s: { n: number; start: number; past: number; capacity: number; numKvHeads: number; headDim: number; qkvDim: number; qDim: number }): void {
    keys.forEach((k, i) => {
      const count = s.n * k.heads * s.headDim;
      const params = [s.n, s.start, s.past, s.capacity, k.heads, s.headDim, s.qkvDim, s.qDim, k.firstHead, s.numKvHeads * s.headDim];
      rec.dispatch(this.pipelines.kvWrite, params, [qkv, k.buffer, values[i]!.buffer], groupsOf(count, ELEMENTWISE_WORKGROUP));
    });
  }

  /** Pairs per rotary invocation: a whole vector on software adapters, one pair on GPUs. */
  private rotaryPairs(half: number): number {
    return this.kernelSet === 'register-blocked' ? Math.max(1, half) : 1;
  }

  /**
   * Causal attention of one row; writes `out[start + t][head·headDim]` (row stride numHeads·headDim).
   * One invocation per query and head with the register-blocked set, a workgroup per query and head
   * with the tiled set; a dispatch per head block of the cache layer (its query heads).
   */
  attention(rec: CommandRecorder, q: GPUBuffer, keys: readonly KvHeadBlock[], values: readonly KvHeadBlock[], out: GPUBuffer, s: AttentionShape): void {
    const group = s.numHeads / s.numKvHeads;
    const perQuery = this.kernelSet === 'register-blocked' && s.headDim % 4 === 0 && s.qStride % 4 === 0 && s.headDim <= MAX_ATTENTION_HEAD_DIM;
    const pipeline = perQuery ? this.perQueryAttention(s.headDim) : this.pipelines.attentionWorkgroup;
    keys.forEach((k, i) => {
      const heads = k.heads * group;
      const params = [s.n, s.start, s.past, s.capacity, heads, group, s.headDim, s.qStride, s.numHeads * s.headDim, { f32: 1 / Math.sqrt(s.headDim) }, k.firstHead * group];
      const bindings = [q, k.buffer, values[i]!.buffer, out];
      rec.dispatch(pipeline, params, bindings, perQuery ? groupsOf(s.n * heads, 64) : s.n * heads);
    });
  }

  private perQueryAttention(headDim: number): GPUComputePipeline {
    let pipeline = this.attentionByHeadDim.get(headDim);
    if (!pipeline) {
      pipeline = attentionPerQueryPipeline(this.device, headDim);
      this.attentionByHeadDim.set(headDim, pipeline);
    }
    return pipeline;
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
