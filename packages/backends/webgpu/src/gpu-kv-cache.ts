/// <reference types="@webgpu/types" />
import { CacheError, type KvCache, type KvCacheLayout, type RegimeSpan, RegimeSpans, type RopeRegime } from '@ropeswitch/core';
import { STORAGE_USAGE } from './gpu-flags.js';

/** What a cache needs of the backend that made it: its device and the largest buffer it may bind. */
export interface GpuCacheHost {
  readonly device: GPUDevice;
  /** Bytes one storage binding may span (the device's `maxStorageBufferBindingSize`). */
  readonly maxBindingBytes: number;
}

/**
 * A KV cache in GPU buffers: one key and one value buffer per layer, each
 * `[kvHead][index][headDim]` float32 with room for `capacity` indices per head (the CPU cache's
 * layout, so attention for one head scans one contiguous block). Keys are stored after RoPE and
 * the attention factor. Token ids, positions and regime spans stay on the CPU.
 *
 * Capacity grows by doubling, copying each head's rows on the device. A forward writes its new rows
 * past `length` and {@link commit}s them only after every row succeeded, so a failed forward leaves
 * the visible cache unchanged. Device work is ordered by the queue: a copy or rotation submitted
 * here runs after every forward submitted before it.
 */
export class GpuKvCache implements KvCache {
  readonly location = 'gpu' as const;
  private keyBuffers: GPUBuffer[];
  private valueBuffers: GPUBuffer[];
  private tokenIds: Int32Array;
  private positionIds: Int32Array;
  private spans = new RegimeSpans();
  private size = 0;
  private cap: number;
  private freed = false;

  constructor(
    readonly host: GpuCacheHost,
    readonly layout: KvCacheLayout,
    initialCapacity = 16,
  ) {
    this.cap = Math.max(1, initialCapacity);
    this.checkCapacity(this.cap);
    this.keyBuffers = this.allocLayers(this.cap, 'keys');
    this.valueBuffers = this.allocLayers(this.cap, 'values');
    this.tokenIds = new Int32Array(this.cap);
    this.positionIds = new Int32Array(this.cap);
  }

  get length(): number {
    return this.size;
  }

  /** Indices per head the buffers hold. */
  get capacity(): number {
    return this.cap;
  }

  get disposed(): boolean {
    return this.freed;
  }

  get byteLength(): number {
    const { numLayers, numKvHeads, headDim } = this.layout;
    return this.freed ? 0 : 2 * numLayers * numKvHeads * this.cap * headDim * 4;
  }

  /** The key buffer of `layer` (`[kvHead][index][headDim]`, `capacity` indices per head). Valid until the next `reserve`. */
  keys(layer: number): GPUBuffer {
    this.assertLive();
    const b = this.keyBuffers[layer];
    if (!b) throw new CacheError('out-of-range', `layer ${layer} is outside [0, ${this.layout.numLayers})`);
    return b;
  }

  /** The value buffer of `layer`, laid out like {@link keys}. */
  values(layer: number): GPUBuffer {
    this.assertLive();
    const b = this.valueBuffers[layer];
    if (!b) throw new CacheError('out-of-range', `layer ${layer} is outside [0, ${this.layout.numLayers})`);
    return b;
  }

  reserve(extra: number): void {
    this.assertLive();
    if (!Number.isSafeInteger(extra) || extra < 0) throw new CacheError('bad-reserve', `cannot reserve ${extra} rows: a non-negative integer is needed`);
    const need = this.size + extra;
    if (need <= this.cap) return;
    let cap = this.cap;
    while (cap < need) cap *= 2;
    // Doubling past the binding limit: take what fits instead, if that is enough.
    if (this.layerBytes(cap) > this.host.maxBindingBytes) cap = Math.max(need, Math.floor(this.host.maxBindingBytes / this.layerBytes(1)));
    this.checkCapacity(cap);
    const keys = this.allocLayers(cap, 'keys');
    const values = this.allocLayers(cap, 'values');
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBuffers, this.cap, keys, cap);
    this.copyRows(encoder, this.valueBuffers, this.cap, values, cap);
    this.host.device.queue.submit([encoder.finish()]);
    // Destroying after submission is safe: the device frees them once the copies ran.
    for (const b of [...this.keyBuffers, ...this.valueBuffers]) b.destroy();
    this.keyBuffers = keys;
    this.valueBuffers = values;
    const tokens = new Int32Array(cap);
    tokens.set(this.tokenIds.subarray(0, this.size));
    const positions = new Int32Array(cap);
    positions.set(this.positionIds.subarray(0, this.size));
    this.tokenIds = tokens;
    this.positionIds = positions;
    this.cap = cap;
  }

  /** Makes the `tokens.length` rows written past `length` visible, rotated under `regime`. */
  commit(tokens: ArrayLike<number>, positions: ArrayLike<number>, regime: RopeRegime): void {
    this.assertLive();
    const n = tokens.length;
    if (positions.length !== n || this.size + n > this.cap) {
      throw new CacheError('bad-commit', `commit of ${n} rows does not fit the reserved cache (length ${this.size}, capacity ${this.cap})`);
    }
    for (let i = 0; i < n; i++) {
      this.tokenIds[this.size + i] = tokens[i]!;
      this.positionIds[this.size + i] = positions[i]!;
    }
    this.spans.append(this.size, n, regime);
    this.size += n;
  }

  /** Records that every cached key is now rotated under `regime` (after an on-device rerotation). */
  markRotated(regime: RopeRegime): void {
    this.assertLive();
    this.spans.reset(this.size, regime);
  }

  tokens(): Int32Array {
    this.assertLive();
    return this.tokenIds.slice(0, this.size);
  }

  positions(): Int32Array {
    this.assertLive();
    return this.positionIds.slice(0, this.size);
  }

  regimeAt(index: number): RopeRegime {
    this.assertLive();
    const r = Number.isInteger(index) && index >= 0 && index < this.size ? this.spans.at(index) : undefined;
    if (!r) throw new CacheError('out-of-range', `cache index ${index} is outside [0, ${this.size})`);
    return r;
  }

  regimeSpans(): readonly RegimeSpan[] {
    this.assertLive();
    return this.spans.all;
  }

  uniformRegime(): RopeRegime | undefined {
    const all = this.regimeSpans();
    return all.length === 1 ? all[0]!.regime : undefined;
  }

  /** A copy on the same device (`copyBufferToBuffer` of each head's rows), capacity = length. */
  clone(): GpuKvCache {
    this.assertLive();
    const c = new GpuKvCache(this.host, this.layout, Math.max(this.size, 1));
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBuffers, this.cap, c.keyBuffers, c.cap);
    this.copyRows(encoder, this.valueBuffers, this.cap, c.valueBuffers, c.cap);
    this.host.device.queue.submit([encoder.finish()]);
    c.tokenIds.set(this.tokenIds.subarray(0, this.size));
    c.positionIds.set(this.positionIds.subarray(0, this.size));
    c.spans = this.spans.copy();
    c.size = this.size;
    return c;
  }

  replaceWith(other: KvCache): void {
    this.assertLive();
    if (other === this) return;
    if (!(other instanceof GpuKvCache) || other.host.device !== this.host.device) {
      throw new CacheError('foreign-cache', `cannot replace a WebGPU cache with a ${other.location} cache of another kind or device`);
    }
    other.assertLive();
    const a = this.layout;
    const b = other.layout;
    if (a.numLayers !== b.numLayers || a.numKvHeads !== b.numKvHeads || a.headDim !== b.headDim) {
      throw new CacheError('cache-layout', `cannot replace a ${a.numLayers}×${a.numKvHeads}×${a.headDim} cache with a ${b.numLayers}×${b.numKvHeads}×${b.headDim} one`);
    }
    for (const buf of [...this.keyBuffers, ...this.valueBuffers]) buf.destroy();
    this.keyBuffers = other.keyBuffers;
    this.valueBuffers = other.valueBuffers;
    this.tokenIds = other.tokenIds;
    this.positionIds = other.positionIds;
    this.spans = other.spans;
    this.size = other.size;
    this.cap = other.cap;
    // `other` is disposed without freeing the buffers it handed over.
    other.keyBuffers = [];
    other.valueBuffers = [];
    other.dispose();
  }

  crop(length: number): void {
    this.assertLive();
    if (!Number.isInteger(length) || length < 0 || length > this.size) {
      throw new CacheError('bad-crop', `cannot crop a cache of ${this.size} tokens to ${length}`);
    }
    this.size = length;
    this.spans.crop(length);
  }

  /** Frees the GPU buffers (idempotent). */
  dispose(): void {
    if (this.freed) return;
    this.freed = true;
    for (const b of [...this.keyBuffers, ...this.valueBuffers]) b.destroy();
    this.keyBuffers = [];
    this.valueBuffers = [];
  }

  private layerBytes(capacity: number): number {
    return this.layout.numKvHeads * capacity * this.layout.headDim * 4;
  }

  private checkCapacity(capacity: number): void {
    const bytes = this.layerBytes(capacity);
    if (bytes > this.host.maxBindingBytes) {
      throw new CacheError(
        'too-large',
        `a cache of ${capacity} tokens needs ${bytes} bytes per layer for keys, over this device's maxStorageBufferBindingSize (${this.host.maxBindingBytes}); use a device with higher limits or shorter sequences`,
      );
    }
  }

  private allocLayers(capacity: number, what: string): GPUBuffer[] {
    const size = Math.max(16, this.layerBytes(capacity));
    return Array.from({ length: this.layout.numLayers }, (_, l) => this.host.device.createBuffer({ size, usage: STORAGE_USAGE, label: `kv ${what} layer ${l}` }));
  }

  /** Encodes copies of indices [0, length) of every head from `from` (capacity `fromCap`) into `to` (capacity `toCap`). */
  private copyRows(encoder: GPUCommandEncoder, from: GPUBuffer[], fromCap: number, to: GPUBuffer[], toCap: number): void {
    const { numKvHeads, headDim } = this.layout;
    const bytes = this.size * headDim * 4;
    if (bytes === 0) return;
    for (let l = 0; l < from.length; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        encoder.copyBufferToBuffer(from[l]!, h * fromCap * headDim * 4, to[l]!, h * toCap * headDim * 4, bytes);
      }
    }
  }

  private assertLive(): void {
    if (this.freed) throw new CacheError('disposed', 'this KV cache was disposed');
  }
}
