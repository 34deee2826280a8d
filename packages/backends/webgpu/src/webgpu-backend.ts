/// <reference types="@webgpu/types" />
import {
  type AnglePrecision,
  type Backend,
  type BackendCapabilities,
  BackendError,
  CacheError,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type ModelConfig,
  type RopeRegime,
  type RowLogits,
  modelSchedule,
  positionLimit,
  rotaryTables,
  validateForwardRequest,
} from '@ropeswitch/core';
import { CommandRecorder } from './command-recorder.js';
import { checkDeviceLimits, raisedLimits } from './device-limits.js';
import { DeviceKernels } from './device-kernels.js';
import { type ForwardPass, type PassLimits, passLimits, planPasses } from './forward-passes.js';
import { BufferUsage, MapMode, STORAGE_USAGE } from './gpu-flags.js';
import { GpuKvCache } from './gpu-kv-cache.js';
import { GpuRerotationTables } from './gpu-rerotation-tables.js';
import { type GpuDecoderWeights, uploadDecoderWeights } from './gpu-weights.js';
import { type KernelSetName, adapterFacts, chooseKernelSet, describeAdapter } from './kernel-set.js';
import { MAX_ATTENTION_HEAD_DIM } from './kernels/attention.js';
import { createPipelines } from './pipelines.js';
import type { WeightSource } from './weight-source.js';

/** Options of {@link WebGpuBackend.create}. */
export interface WebGpuBackendOptions {
  /**
   * The device to run on. Without one the backend asks `navigator.gpu` (browsers) for a
   * high-performance adapter; in Node use `createNodeWebGpuBackend` from
   * `@ropeswitch/backend-webgpu/node`, which finds a GPU or the software adapter.
   */
  readonly device?: GPUDevice;
  /** Matmul kernels: `auto` (default) picks `register-blocked` on software adapters, `tiled` elsewhere. */
  readonly kernels?: KernelSetName | 'auto';
  /** Rotary angle precision: `float32` (default) matches HF transformers; `float64` is more accurate. */
  readonly anglePrecision?: AnglePrecision;
  /** Names the adapter in {@link WebGpuBackend.deviceDescription} (default: read from `device.adapterInfo`). */
  readonly adapterDescription?: string;
  /** Whether the adapter is a CPU implementation, for `kernels: 'auto'` (default: guessed from its name). */
  readonly software?: boolean;
  /** Whether {@link WebGpuBackend.dispose} destroys the device (default: only a device the backend requested itself). */
  readonly destroyDeviceOnDispose?: boolean;
  /**
   * Bytes one storage binding may span, at most the device's `maxStorageBufferBindingSize` and
   * `maxBufferSize` (the default). A lower value makes the backend cut weights, caches and forwards
   * as a device with that limit would: for tests, or to keep every buffer small.
   */
  readonly maxBindingBytes?: number;
}

/** Per-forward activations, reused while big enough: `[token][…]` over every row's new tokens. */
interface Activations {
  readonly tokens: number;
  readonly x: GPUBuffer;
  readonly xn: GPUBuffer;
  readonly qkv: GPUBuffer;
  readonly attn: GPUBuffer;
  readonly proj: GPUBuffer;
  readonly gateUp: GPUBuffer;
  readonly act: GPUBuffer;
}

/**
 * A Phi-3 / Llama-family decoder in WGSL compute kernels: embedding, RMSNorm, fused or split QKV,
 * GQA, partial rotary (rotate-half or interleaved), SwiGLU, tied embeddings, with the KV cache in
 * GPU buffers ({@link GpuKvCache}) and an on-device key rerotation. Runs in browsers
 * (`navigator.gpu`) and in Node (Dawn, through `@ropeswitch/backend-webgpu/node`).
 *
 * One forward call runs all its rows through each weight matrix together; attention runs per row
 * over that row's own cache. Rotary cos/sin are computed on the CPU in float32 exactly as the
 * reference backend does (`Math.fround(p·ω)`) and uploaded per call; only the requested logits rows
 * come back to the CPU. New keys/values are written past each cache's length and committed after
 * the whole forward succeeded.
 */
export class WebGpuBackend implements Backend {
  readonly name = 'webgpu';
  readonly capabilities: BackendCapabilities;
  /** The adapter and kernel set in use, e.g. `mesa llvmpipe … [software], register-blocked kernels`. */
  readonly deviceDescription: string;
  /** The matmul kernels in use. */
  readonly kernelSet: KernelSetName;
  /** Bytes of weights on the device. */
  readonly weightBytes: number;
  /** Bytes one storage binding spans here: every weight block, cache block and activation fits in it. */
  readonly maxBindingBytes: number;
  /**
   * Buffers each weight matrix was cut into, by tensor name: 1 where the matrix fits one binding,
   * more for those past it (Phi-3's embedding and LM head on a 128 MiB binding: 3).
   */
  readonly matrixBlocks: ReadonlyMap<string, number>;
  /** New tokens and logits rows one pass over the layers holds; a forward with more runs several passes. */
  readonly passLimits: PassLimits;
  private weights: GpuDecoderWeights | undefined;
  private activations: Activations | undefined;
  private lostReason: string | undefined;
  /** Rerotation cos/sin per move, on the device; none for schedules with a new regime every step. */
  private readonly tables: GpuRerotationTables;
  private readonly memoiseTables: boolean;

  private constructor(
    readonly config: ModelConfig,
    /** The device everything runs on. */
    readonly device: GPUDevice,
    private readonly kernels: DeviceKernels,
    weights: GpuDecoderWeights,
    private readonly empty: GPUBuffer,
    description: string,
    anglePrecision: AnglePrecision,
    private readonly destroyDevice: boolean,
    maxBindingBytes: number,
    limits: PassLimits,
  ) {
    this.weights = weights;
    this.weightBytes = weights.byteLength;
    this.matrixBlocks = weights.matrixBlocks;
    this.maxBindingBytes = maxBindingBytes;
    this.passLimits = limits;
    this.kernelSet = kernels.kernelSet;
    this.deviceDescription = `${description}, ${kernels.kernelSet} kernels`;
    this.capabilities = { cacheLocation: 'gpu', maxRows: Infinity, rerotateKeys: true, anglePrecision };
    this.tables = new GpuRerotationTables(device, maxBindingBytes);
    this.memoiseTables = !modelSchedule(config.rope).changesEveryStep;
    void device.lost.then((info) => {
      this.lostReason = info.message || info.reason || 'unknown reason';
    });
  }

  /**
   * Compiles the kernels and uploads the weights. `weights` is read here only; the caller may close
   * it once the promise resolves.
   * @throws BackendError `'no-webgpu'` without `options.device` where `navigator.gpu` is missing or
   * finds no adapter; `'unsupported-model'` for shapes the kernels do not handle; `'device-limits'`;
   * `'tensor-too-large'` when something that cannot be split (one row of a matrix, one token's
   * activations, one row of logits) exceeds one storage binding, naming it and both sizes;
   * `'out-of-memory'` when the device cannot hold the weights.
   * @throws WeightsError for a missing or misshapen tensor.
   */
  static async create(config: ModelConfig, weights: WeightSource, options: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    if (config.headDim > MAX_ATTENTION_HEAD_DIM) {
      throw new BackendError('unsupported-model', `head_dim ${config.headDim} exceeds ${MAX_ATTENTION_HEAD_DIM}, the largest the attention kernel handles`);
    }
    if (config.numHeads % config.numKvHeads !== 0) {
      throw new BackendError('unsupported-model', `${config.numHeads} attention heads do not divide into ${config.numKvHeads} KV heads`);
    }
    let device = options.device;
    let owned = false;
    let description = options.adapterDescription;
    let software = options.software;
    if (!device) {
      const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
      if (!gpu) {
        throw new BackendError('no-webgpu', 'no WebGPU here (navigator.gpu is missing): pass options.device, or in Node use createNodeWebGpuBackend from @ropeswitch/backend-webgpu/node');
      }
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new BackendError('no-webgpu', 'navigator.gpu.requestAdapter() found no adapter: WebGPU is disabled or unsupported on this machine');
      device = await adapter.requestDevice({ requiredLimits: raisedLimits(adapter) });
      owned = true;
      const facts = adapterFacts(adapter.info);
      description ??= describeAdapter(facts);
      software ??= facts.software;
    }
    let maxBindingBytes: number;
    let limits: PassLimits;
    try {
      checkDeviceLimits(device);
      maxBindingBytes = bindingBytes(device, options.maxBindingBytes);
      limits = passLimits(config, maxBindingBytes);
    } catch (error) {
      if (owned) device.destroy();
      throw error;
    }
    const facts = adapterFacts((device as { adapterInfo?: GPUAdapterInfo }).adapterInfo);
    description ??= describeAdapter(facts);
    software ??= facts.software;
    const kernelSet = chooseKernelSet(options.kernels ?? 'auto', { ...facts, software });
    device.pushErrorScope('validation');
    const pipelines = await createPipelines(device);
    const compileError = await device.popErrorScope();
    if (compileError) throw new BackendError('gpu-error', `compiling the WGSL kernels failed: ${compileError.message}`);
    const empty = device.createBuffer({ size: 16, usage: BufferUsage.STORAGE });
    const kernels = new DeviceKernels(device, pipelines, kernelSet, empty);
    let uploaded: GpuDecoderWeights;
    device.pushErrorScope('out-of-memory');
    try {
      uploaded = uploadDecoderWeights(device, config, weights, maxBindingBytes);
    } catch (error) {
      void device.popErrorScope();
      empty.destroy();
      if (owned) device.destroy();
      throw error;
    }
    const memory = await device.popErrorScope();
    if (memory) {
      for (const b of uploaded.buffers) b.destroy();
      empty.destroy();
      if (owned) device.destroy();
      throw new BackendError('out-of-memory', `the device could not hold the weights (${uploaded.byteLength} bytes): ${memory.message}`);
    }
    return new WebGpuBackend(
      config,
      device,
      kernels,
      uploaded,
      empty,
      description,
      options.anglePrecision ?? 'float32',
      options.destroyDeviceOnDispose ?? owned,
      maxBindingBytes,
      limits,
    );
  }

  createCache(): GpuKvCache {
    this.assertUsable();
    const { numLayers, numKvHeads, headDim } = this.config;
    return new GpuKvCache({ device: this.device, maxBindingBytes: this.maxBindingBytes }, { numLayers, numKvHeads, headDim });
  }

  async forward(request: ForwardRequest): Promise<ForwardResult> {
    const w = this.assertUsable();
    validateForwardRequest(this.config, this.capabilities, request);
    request.signal?.throwIfAborted();
    const c = this.config;
    const V = c.vocabSize;
    const caches = request.rows.map((row, r) => this.ownCache(row.cache, r));
    let longest = 0;
    request.rows.forEach((row, r) => {
      longest = Math.max(longest, caches[r]!.length + row.tokens.length);
    });
    // Sliding-window attention (Mistral, some Qwen2) is not implemented: refuse rather than differ.
    if (c.slidingWindow !== undefined && longest > c.slidingWindow) {
      throw new BackendError('sliding-window', `a sequence of ${longest} tokens exceeds the model's sliding window (${c.slidingWindow}), which the WebGPU backend does not implement`);
    }
    for (let r = 0; r < caches.length; r++) caches[r]!.reserve(request.rows[r]!.tokens.length);
    // More tokens or logits rows than one binding holds run as several passes, in order.
    const passes = planPasses(request.rows.map((row) => ({ tokens: row.tokens.length, logits: row.logits ?? 1 })), this.passLimits);

    const device = this.device;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const temporary: GPUBuffer[] = [];
    const readbacks: { buffer: GPUBuffer; rows: number }[] = [];
    let recordError: unknown;
    try {
      const rec = new CommandRecorder(device);
      const a = this.activationsFor(Math.max(...passes.map((p) => p.tokens)));
      for (const pass of passes) {
        const readback = this.recordPass(rec, w, a, pass, request, caches, temporary);
        if (readback) readbacks.push({ buffer: readback, rows: pass.logitRows });
      }
      const { commands, uniforms } = rec.finish();
      if (uniforms) temporary.push(uniforms);
      device.queue.submit([commands]);
    } catch (error) {
      recordError = error;
    }
    // Scopes are popped whatever happened while recording (an abort, say).
    const validation = device.popErrorScope();
    const memory = device.popErrorScope();
    try {
      const failure = (await validation) ?? (await memory);
      if (recordError !== undefined) throw recordError;
      if (failure) throw new BackendError('gpu-error', `the WebGPU forward failed: ${failure.message}`);
      const logitRows = readbacks.reduce((n, b) => n + b.rows, 0);
      const data = new Float32Array(logitRows * V);
      let at = 0;
      for (const b of readbacks) {
        await b.buffer.mapAsync(MapMode.READ);
        data.set(new Float32Array(b.buffer.getMappedRange(), 0, b.rows * V), at * V);
        b.buffer.unmap();
        at += b.rows;
      }
      if (readbacks.length === 0) await device.queue.onSubmittedWorkDone();
      if (this.lostReason !== undefined) throw new BackendError('device-lost', `the WebGPU device was lost during the forward: ${this.lostReason}`);
      request.signal?.throwIfAborted();
      at = 0;
      const outputs: RowLogits[] = request.rows.map((row) => {
        const count = row.logits ?? 1;
        const rowData = data.slice(at * V, (at + count) * V);
        at += count;
        return { count, vocabSize: V, data: rowData };
      });
      // Every row succeeded: only now do the new rows become part of each cache.
      request.rows.forEach((row, r) => caches[r]!.commit(row.tokens, row.positions, row.regime));
      return { rows: outputs };
    } finally {
      for (const b of [...temporary, ...readbacks.map((r) => r.buffer)]) b.destroy();
    }
  }

  /**
   * Records one pass: its pieces' tokens through every layer (each piece's new keys written past its
   * cache's length plus the tokens earlier passes wrote), then the final norm and LM head of its
   * logits rows, copied to the readback buffer it returns (none without logits rows).
   */
  private recordPass(rec: CommandRecorder, w: GpuDecoderWeights, a: Activations, pass: ForwardPass, request: ForwardRequest, caches: readonly GpuKvCache[], temporary: GPUBuffer[]): GPUBuffer | undefined {
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, rmsNormEps: eps, vocabSize: V } = c;
    const qDim = numHeads * headDim;
    const qkvDim = qDim + 2 * numKvHeads * headDim;
    const half = c.rope.rotaryDim / 2;
    const interleaved = c.rope.pairing === 'interleaved';
    const total = pass.tokens;
    const ids = new Uint32Array(total);
    const cos = new Float32Array(Math.max(1, total * half));
    const sin = new Float32Array(Math.max(1, total * half));
    for (const piece of pass.pieces) {
      const row = request.rows[piece.row]!;
      const positions = Array.from({ length: piece.count }, (_, t) => row.positions[piece.from + t]!);
      for (let t = 0; t < piece.count; t++) ids[piece.start + t] = row.tokens[piece.from + t]!;
      const tables = rotaryTables(row.regime, positions, this.capabilities.anglePrecision);
      cos.set(tables.cos, piece.start * half);
      sin.set(tables.sin, piece.start * half);
    }
    const uploads = [this.upload(ids), this.upload(cos), this.upload(sin)];
    temporary.push(...uploads);
    const [idBuf, cosBuf, sinBuf] = uploads as [GPUBuffer, GPUBuffer, GPUBuffer];
    const k = this.kernels;
    k.embed(rec, idBuf, w.embed, a.x, total);
    for (let l = 0; l < w.layers.length; l++) {
      request.signal?.throwIfAborted();
      const lw = w.layers[l]!;
      k.rmsNorm(rec, a.x, lw.inputNorm, a.xn, total, H, eps);
      k.matmul(rec, a.xn, total, lw.qkv, a.qkv, lw.qkvBias);
      k.rotaryHeads(rec, a.qkv, cosBuf, sinBuf, total, numHeads + numKvHeads, headDim, half, qkvDim, interleaved);
      for (const piece of pass.pieces) {
        const cache = caches[piece.row]!;
        const shape = { n: piece.count, start: piece.start, past: cache.length + piece.from, capacity: cache.capacity };
        k.kvWrite(rec, a.qkv, cache.keys(l), cache.values(l), { ...shape, numKvHeads, headDim, qkvDim, qDim });
        k.attention(rec, a.qkv, cache.keys(l), cache.values(l), a.attn, { ...shape, numHeads, numKvHeads, headDim, qStride: qkvDim });
      }
      k.matmul(rec, a.attn, total, lw.o, a.proj);
      k.add(rec, a.x, a.proj, total * H);
      k.rmsNorm(rec, a.x, lw.postAttentionNorm, a.xn, total, H, eps);
      k.matmul(rec, a.xn, total, lw.gateUp, a.gateUp, lw.gateUpBias);
      k.swiglu(rec, a.gateUp, a.act, total, I);
      k.matmul(rec, a.act, total, lw.down, a.proj, lw.downBias);
      k.add(rec, a.x, a.proj, total * H);
    }
    request.signal?.throwIfAborted();
    const logitRows = pass.logitRows;
    if (logitRows === 0) return undefined;
    const finalIn = this.storage(logitRows * H);
    const finalNormed = this.storage(logitRows * H);
    const logits = this.storage(logitRows * V);
    const readback = this.device.createBuffer({ size: logitRows * V * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    temporary.push(finalIn, finalNormed, logits);
    // Only the requested rows go through the final norm and the lm head.
    let at = 0;
    for (const piece of pass.pieces) {
      const first = piece.start + piece.count - piece.logits;
      rec.copy(a.x, first * H * 4, finalIn, at * H * 4, piece.logits * H * 4);
      at += piece.logits;
    }
    k.rmsNorm(rec, finalIn, w.finalNorm, finalNormed, logitRows, H, eps);
    k.matmul(rec, finalNormed, logitRows, w.lmHead, logits);
    rec.copy(logits, 0, readback, 0, logitRows * V * 4);
    return readback;
  }

  async rerotateKeys(cache: KvCache, to: RopeRegime): Promise<void> {
    this.assertUsable();
    this.checkRegime(to);
    const c = this.ownCache(cache, 0);
    const pairs = to.invFreq.length;
    // Check everything before touching a key: a failed rerotation must leave the cache as it was.
    for (const span of c.regimeSpans()) {
      if (span.regime.invFreq.length !== pairs) {
        throw new CacheError('regime-size', `cannot rerotate keys rotated under ${span.regime.id} (${span.regime.invFreq.length} pairs) into ${to.id} (${pairs} pairs)`);
      }
    }
    const positions = c.positions();
    const { numLayers, headDim } = c.layout;
    const interleaved = this.config.rope.pairing === 'interleaved';
    // A span's table rows are bound whole: longer spans go in pieces of what one binding holds.
    const piece = this.tables.maxRows(pairs);
    const device = this.device;
    const rec = new CommandRecorder(device);
    const temporary: GPUBuffer[] = [];
    device.pushErrorScope('validation');
    let recordError: unknown;
    try {
      for (const span of c.regimeSpans()) {
        if (span.regime.id === to.id) continue;
        for (let start = span.start; start < span.end; start += piece) {
          const end = Math.min(span.end, start + piece);
          const t = this.tables.forPositions(span.regime, to, positions.subarray(start, end), this.capabilities.anglePrecision, this.memoiseTables);
          temporary.push(...t.temporary);
          for (let l = 0; l < numLayers; l++) {
            this.kernels.rotateCacheSpan(rec, c.keys(l), t.cos, t.sin, t.rows, start, end - start, c.capacity, headDim, pairs, interleaved);
          }
        }
      }
      const { commands, uniforms } = rec.finish();
      if (uniforms) temporary.push(uniforms);
      device.queue.submit([commands]);
    } catch (error) {
      recordError = error;
    }
    const failure = device.popErrorScope();
    // Destroying after submission is safe: the device frees them once the rotation ran.
    for (const b of temporary) b.destroy();
    const error = await failure;
    if (recordError !== undefined) throw recordError;
    if (error) throw new BackendError('gpu-error', `the WebGPU key rerotation failed: ${error.message}`);
    c.markRotated(to);
  }

  async prepareRerotation(from: RopeRegime, to: RopeRegime, positions: number): Promise<void> {
    this.assertUsable();
    this.checkRegime(from);
    this.checkRegime(to);
    const limit = positionLimit(this.config);
    if (!Number.isSafeInteger(positions) || positions < 0 || positions > limit) {
      throw new BackendError('bad-positions', `cannot prepare rerotation tables for ${positions} positions: an integer in [0, ${limit}] (the model's position limit) is needed`);
    }
    if (this.memoiseTables) this.tables.prepare(from, to, positions, this.capabilities.anglePrecision);
  }

  /** Rows of rerotation tables already on the device for a move (0 if none). */
  preparedRerotationRows(from: RopeRegime, to: RopeRegime): number {
    return this.tables.preparedCount(from, to, this.capabilities.anglePrecision);
  }

  /** Frees weights, activations and tables (and the device, when the backend requested it). Caches are the caller's to dispose. */
  async dispose(): Promise<void> {
    const w = this.weights;
    if (!w) return;
    this.weights = undefined;
    for (const b of w.buffers) b.destroy();
    this.freeActivations();
    this.tables.clear();
    this.empty.destroy();
    if (this.destroyDevice) this.device.destroy();
  }

  private checkRegime(regime: RopeRegime): void {
    if (regime.invFreq.length !== this.config.rope.rotaryDim / 2) {
      throw new BackendError('regime-size', `regime ${regime.id} has ${regime.invFreq.length} frequencies; the model rotates ${this.config.rope.rotaryDim / 2} pairs`);
    }
  }

  private assertUsable(): GpuDecoderWeights {
    if (!this.weights) throw new BackendError('disposed', 'the WebGPU backend was disposed');
    if (this.lostReason !== undefined) throw new BackendError('device-lost', `the WebGPU device was lost: ${this.lostReason}`);
    return this.weights;
  }

  private ownCache(cache: KvCache, row: number): GpuKvCache {
    if (!(cache instanceof GpuKvCache) || cache.host.device !== this.device) {
      throw new BackendError('cache-type', `row ${row}: the WebGPU backend needs caches made by its createCache() (same device)`);
    }
    return cache;
  }

  private activationsFor(tokens: number): Activations {
    const have = this.activations;
    if (have && have.tokens >= tokens) return have;
    this.freeActivations();
    const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim } = this.config;
    const qDim = numHeads * headDim;
    const qkvDim = qDim + 2 * numKvHeads * headDim;
    // Room doubles (from 16 tokens) so a growing prompt reallocates rarely, up to what one pass holds
    // (the forward's passes never hold more).
    const n = Math.max(tokens, Math.min(this.passLimits.tokens, Math.max(16, 2 * (have?.tokens ?? 0))));
    const a: Activations = {
      tokens: n,
      x: this.storage(n * H),
      xn: this.storage(n * H),
      qkv: this.storage(n * qkvDim),
      attn: this.storage(n * qDim),
      proj: this.storage(n * H),
      gateUp: this.storage(n * 2 * I),
      act: this.storage(n * I),
    };
    this.activations = a;
    return a;
  }

  private freeActivations(): void {
    const a = this.activations;
    if (!a) return;
    for (const b of [a.x, a.xn, a.qkv, a.attn, a.proj, a.gateUp, a.act]) b.destroy();
    this.activations = undefined;
  }

  private storage(elements: number): GPUBuffer {
    return this.device.createBuffer({ size: Math.max(16, Math.ceil(elements / 4) * 16), usage: STORAGE_USAGE });
  }

  /** A buffer of `data`; callers keep it within one binding (a pass's tokens, its tables). */
  private upload(data: Float32Array | Uint32Array): GPUBuffer {
    const buffer = this.device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: STORAGE_USAGE, mappedAtCreation: true });
    const range = buffer.getMappedRange();
    if (data instanceof Float32Array) new Float32Array(range).set(data);
    else new Uint32Array(range).set(data);
    buffer.unmap();
    return buffer;
  }
}

/**
 * The binding size the backend plans with: the device's `maxStorageBufferBindingSize` (no buffer
 * may be larger than `maxBufferSize` either), or the lower `requested` one, rounded down to 16
 * bytes (every buffer's size is a multiple of 16).
 * @throws BackendError `'bad-option'` for a requested size that is not an integer of at least 16.
 */
function bindingBytes(device: GPUDevice, requested: number | undefined): number {
  if (requested !== undefined && (!Number.isSafeInteger(requested) || requested < 16)) {
    throw new BackendError('bad-option', `maxBindingBytes must be an integer of at least 16 bytes, got ${requested}`);
  }
  const device_ = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  return Math.floor(Math.min(device_, requested ?? device_) / 16) * 16;
}
