/// <reference types="@webgpu/types" />
import { CacheError, CacheRecord, type KvCache, type KvCacheLayout, type RegimeSpan, type RopeRegime } from '@ropeswitch/core';
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
 * the attention factor. Token ids, positions and regime spans stay on the CPU, in core's
 * {@link CacheRecord} (as for the CPU cache).
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
  private record: CacheRecord;

  constructor(
    readonly host: GpuCacheHost,
    readonly layout: KvCacheLayout,
    initialCapacity = 16,
  ) {
    // Checked before the record allocates its per-index arrays.
    this.checkCapacity(Math.max(1, initialCapacity));
    this.record = new CacheRecord(layout, initialCapacity);
    this.keyBuffers = this.allocLayers(this.record.capacity, 'keys');
    this.valueBuffers = this.allocLayers(this.record.capacity, 'values');
  }

  get length(): number {
    return this.record.length;
  }

  /** Indices per head the buffers hold. */
  get capacity(): number {
    return this.record.capacity;
  }

  get disposed(): boolean {
    return this.record.disposed;
  }

  get byteLength(): number {
    return this.disposed ? 0 : 2 * this.layout.numLayers * this.layerBytes(this.capacity);
  }

  /** The key buffer of `layer` (`[kvHead][index][headDim]`, `capacity` indices per head). Valid until the next `reserve`. */
  keys(layer: number): GPUBuffer {
    return this.layerBuffer(this.keyBuffers, layer);
  }

  /** The value buffer of `layer`, laid out like {@link keys}. */
  values(layer: number): GPUBuffer {
    return this.layerBuffer(this.valueBuffers, layer);
  }

  reserve(extra: number): void {
    let cap = this.record.grownCapacity(extra);
    if (cap === undefined) return;
    // Doubling past the binding limit: take what fits instead, if that is enough.
    if (this.layerBytes(cap) > this.host.maxBindingBytes) cap = Math.max(this.length + extra, Math.floor(this.host.maxBindingBytes / this.layerBytes(1)));
    this.checkCapacity(cap);
    const keys = this.allocLayers(cap, 'keys');
    const values = this.allocLayers(cap, 'values');
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBuffers, this.capacity, keys, cap);
    this.copyRows(encoder, this.valueBuffers, this.capacity, values, cap);
    this.host.device.queue.submit([encoder.finish()]);
    // Destroying after submission is safe: the device frees them once the copies ran.
    for (const b of [...this.keyBuffers, ...this.valueBuffers]) b.destroy();
    this.keyBuffers = keys;
    this.valueBuffers = values;
    this.record.grow(cap);
  }

  /** Makes the `tokens.length` rows written past `length` visible, rotated under `regime`. */
  commit(tokens: ArrayLike<number>, positions: ArrayLike<number>, regime: RopeRegime): void {
    this.record.commit(tokens, positions, regime);
  }

  /** Records that every cached key is now rotated under `regime` (after an on-device rerotation). */
  markRotated(regime: RopeRegime): void {
    this.record.markRotated(regime);
  }

  tokens(): Int32Array {
    return this.record.tokens();
  }

  positions(): Int32Array {
    return this.record.positions();
  }

  regimeAt(index: number): RopeRegime {
    return this.record.regimeAt(index);
  }

  regimeSpans(): readonly RegimeSpan[] {
    return this.record.regimeSpans();
  }

  uniformRegime(): RopeRegime | undefined {
    return this.record.uniformRegime();
  }

  /** A copy on the same device (`copyBufferToBuffer` of each head's rows), capacity = length. */
  clone(): GpuKvCache {
    const record = this.record.copy();
    const c = new GpuKvCache(this.host, this.layout, record.capacity);
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBuffers, this.capacity, c.keyBuffers, c.capacity);
    this.copyRows(encoder, this.valueBuffers, this.capacity, c.valueBuffers, c.capacity);
    this.host.device.queue.submit([encoder.finish()]);
    c.record = record;
    return c;
  }

  replaceWith(other: KvCache): void {
    this.record.assertLive();
    if (other === this) return;
    if (!(other instanceof GpuKvCache) || other.host.device !== this.host.device) {
      throw new CacheError('foreign-cache', `cannot replace a WebGPU cache with a ${other.location} cache of another kind or device`);
    }
    this.record.takeOver(other.record);
    for (const buf of [...this.keyBuffers, ...this.valueBuffers]) buf.destroy();
    this.keyBuffers = other.keyBuffers;
    this.valueBuffers = other.valueBuffers;
    // `other` is disposed without freeing the buffers it handed over.
    other.keyBuffers = [];
    other.valueBuffers = [];
    other.dispose();
  }

  crop(length: number): void {
    this.record.crop(length);
  }

  /** Frees the GPU buffers (idempotent). */
  dispose(): void {
    if (this.disposed) return;
    this.record.dispose();
    for (const b of [...this.keyBuffers, ...this.valueBuffers]) b.destroy();
    this.keyBuffers = [];
    this.valueBuffers = [];
  }

  private layerBuffer(buffers: readonly GPUBuffer[], layer: number): GPUBuffer {
    this.record.assertLive();
    const b = buffers[layer];
    if (!b) throw new CacheError('out-of-range', `layer ${layer} is outside [0, ${this.layout.numLayers})`);
    return b;
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
    const bytes = this.length * headDim * 4;
    if (bytes === 0) return;
    for (let l = 0; l < from.length; l++) {
      for (let h = 0; h < numKvHeads; h++) {
        encoder.copyBufferToBuffer(from[l]!, h * fromCap * headDim * 4, to[l]!, h * toCap * headDim * 4, bytes);
      }
    }
  }
}
