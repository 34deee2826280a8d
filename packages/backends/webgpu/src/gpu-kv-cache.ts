/// <reference types="@webgpu/types" />
import { CacheError, type CloneOptions, type KvCache, type KvCacheLayout, RecordedKvCache } from '@ropeswitch/core';
import { splitIntoBlocks } from './binding-blocks.js';
import { STORAGE_USAGE } from './gpu-flags.js';

/** What a cache needs of the backend that made it: its device and the largest buffer it may bind. */
export interface GpuCacheHost {
  readonly device: GPUDevice;
  /** Bytes one storage binding may span (the device's `maxStorageBufferBindingSize`, or less). */
  readonly maxBindingBytes: number;
}

/**
 * KV heads `[firstHead, firstHead + heads)` of one layer's keys or values in one buffer,
 * `[head][index][headDim]` float32 with `capacity` indices per head. A layer is one block while it
 * fits one storage binding, else several, so every kernel binds a block whole.
 */
export interface KvHeadBlock {
  readonly buffer: GPUBuffer;
  readonly firstHead: number;
  readonly heads: number;
}

/**
 * A KV cache in GPU buffers: per layer, keys and values `[kvHead][index][headDim]` float32 with
 * room for `capacity` indices per head (the CPU cache's layout, so attention for one head scans one
 * contiguous block), in as few {@link KvHeadBlock}s as the device's storage binding size allows (one,
 * unless a layer's heads are larger than one binding). Keys are stored after RoPE and the attention
 * factor. Token ids, positions and regime spans stay on the CPU, in the record
 * {@link RecordedKvCache} keeps (as for the CPU cache).
 *
 * Capacity grows by doubling, copying each head's rows on the device. A forward writes its new rows
 * past `length` and {@link commit}s them only after every row succeeded, so a failed forward leaves
 * the visible cache unchanged. Device work is ordered by the queue: a copy or rotation submitted
 * here runs after every forward submitted before it.
 */
export class GpuKvCache extends RecordedKvCache {
  readonly location = 'gpu' as const;
  private keyBlocks: KvHeadBlock[][];
  private valueBlocks: KvHeadBlock[][];

  constructor(
    readonly host: GpuCacheHost,
    layout: KvCacheLayout,
    initialCapacity = 16,
  ) {
    // Checked before the record allocates its per-index arrays.
    super(layout, checkedCapacity(host, layout, Math.max(1, initialCapacity)));
    this.keyBlocks = this.allocLayers(this.capacity, 'keys');
    this.valueBlocks = this.allocLayers(this.capacity, 'values');
  }

  get byteLength(): number {
    return this.disposed ? 0 : 2 * this.layout.numLayers * this.layout.numKvHeads * headBytes(this.layout, this.capacity);
  }

  /** The key blocks of `layer` (together every KV head, in order). Valid until the next `reserve`. */
  keys(layer: number): readonly KvHeadBlock[] {
    return this.layerBlocks(this.keyBlocks, layer);
  }

  /** The value blocks of `layer`, laid out like {@link keys}. */
  values(layer: number): readonly KvHeadBlock[] {
    return this.layerBlocks(this.valueBlocks, layer);
  }

  reserve(extra: number): void {
    let cap = this.record.grownCapacity(extra);
    if (cap === undefined) return;
    // Doubling past what one head may bind: take what fits instead, if that is enough.
    const most = Math.floor(this.host.maxBindingBytes / headBytes(this.layout, 1));
    if (cap > most) cap = Math.max(this.length + extra, most);
    checkedCapacity(this.host, this.layout, cap);
    const keys = this.allocLayers(cap, 'keys');
    const values = this.allocLayers(cap, 'values');
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBlocks, this.capacity, keys, cap);
    this.copyRows(encoder, this.valueBlocks, this.capacity, values, cap);
    this.host.device.queue.submit([encoder.finish()]);
    // Destroying after submission is safe: the device frees them once the copies ran.
    this.destroyBlocks();
    this.keyBlocks = keys;
    this.valueBlocks = values;
    this.record.grow(cap);
  }

  /** A copy on the same device (`copyBufferToBuffer` of each head's kept rows); see {@link KvCache.clone}. */
  clone(options?: CloneOptions): GpuKvCache {
    const record = this.record.copy(options);
    const c = new GpuKvCache(this.host, this.layout, record.capacity);
    const encoder = this.host.device.createCommandEncoder();
    this.copyRows(encoder, this.keyBlocks, this.capacity, c.keyBlocks, c.capacity, record.length);
    this.copyRows(encoder, this.valueBlocks, this.capacity, c.valueBlocks, c.capacity, record.length);
    this.host.device.queue.submit([encoder.finish()]);
    c.record = record;
    return c;
  }

  protected refusal(other: KvCache): string | undefined {
    if (other instanceof GpuKvCache && other.host.device === this.host.device) return undefined;
    return `cannot replace a WebGPU cache with a ${other.location} cache of another kind or device`;
  }

  /** Destroys the GPU buffers. */
  protected freeStorage(): void {
    this.destroyBlocks();
    this.keyBlocks = [];
    this.valueBlocks = [];
  }

  protected adoptStorage(other: this): void {
    this.keyBlocks = other.keyBlocks;
    this.valueBlocks = other.valueBlocks;
    other.keyBlocks = [];
    other.valueBlocks = [];
  }

  private destroyBlocks(): void {
    for (const layer of [...this.keyBlocks, ...this.valueBlocks]) for (const b of layer) b.buffer.destroy();
  }

  private layerBlocks(blocks: readonly KvHeadBlock[][], layer: number): readonly KvHeadBlock[] {
    this.record.assertLive();
    const b = blocks[layer];
    if (!b) throw new CacheError('out-of-range', `layer ${layer} is outside [0, ${this.layout.numLayers})`);
    return b;
  }

  private allocLayers(capacity: number, what: string): KvHeadBlock[][] {
    const { numLayers, numKvHeads } = this.layout;
    const split = splitIntoBlocks(numKvHeads, headBytes(this.layout, capacity), this.host.maxBindingBytes)!;
    return Array.from({ length: numLayers }, (_, l) =>
      split.map(({ first, count }) => ({
        buffer: this.host.device.createBuffer({ size: Math.max(16, count * headBytes(this.layout, capacity)), usage: STORAGE_USAGE, label: `kv ${what} layer ${l} heads ${first}+${count}` }),
        firstHead: first,
        heads: count,
      })),
    );
  }

  /** Encodes copies of indices [0, length) of every head from `from` (capacity `fromCap`) into `to` (capacity `toCap`). */
  /** Each head's first `rows` indices (default: the cache's length) from one set of blocks to another. */
  private copyRows(encoder: GPUCommandEncoder, from: KvHeadBlock[][], fromCap: number, to: KvHeadBlock[][], toCap: number, rows = this.length): void {
    const bytes = headBytes(this.layout, rows);
    if (bytes === 0) return;
    for (let l = 0; l < from.length; l++) {
      for (let h = 0; h < this.layout.numKvHeads; h++) {
        const a = headAt(from[l]!, h, headBytes(this.layout, fromCap));
        const b = headAt(to[l]!, h, headBytes(this.layout, toCap));
        encoder.copyBufferToBuffer(a.buffer, a.offset, b.buffer, b.offset, bytes);
      }
    }
  }
}

/** Bytes of `capacity` indices of one KV head. */
function headBytes(layout: KvCacheLayout, capacity: number): number {
  return capacity * layout.headDim * 4;
}

/** The buffer and byte offset of KV head `head` among a layer's blocks (`stride` bytes per head). */
export function headAt(blocks: readonly KvHeadBlock[], head: number, stride: number): { buffer: GPUBuffer; offset: number } {
  const b = blocks.find((x) => head >= x.firstHead && head < x.firstHead + x.heads);
  if (!b) throw new CacheError('out-of-range', `KV head ${head} is in no block of this layer`);
  return { buffer: b.buffer, offset: (head - b.firstHead) * stride };
}

/** `capacity`, once one head of that many indices fits one storage binding. */
function checkedCapacity(host: GpuCacheHost, layout: KvCacheLayout, capacity: number): number {
  const bytes = headBytes(layout, capacity);
  if (bytes > host.maxBindingBytes) {
    throw new CacheError(
      'too-large',
      `a cache of ${capacity} tokens needs ${bytes} bytes per KV head and layer, over this device's storage binding size (${host.maxBindingBytes} bytes, maxStorageBufferBindingSize); use a device with higher limits or shorter sequences`,
    );
  }
  return capacity;
}
