import { BackendError } from '@ropeswitch/core';
import { type WasmMemory, webAssembly } from './webassembly-api.js';
import type { KvBlock, KvStorage } from '../decoder-kernels.js';

const PAGE = 65536;
/** The kernels have no data segments; the first page stays unused so no block sits at address 0. */
const HEAP_START = PAGE;
/** Blocks start on cache-line boundaries (and so suit v128 loads). */
const ALIGN = 64;
/** wasm32's ceiling (65536 pages of 64 KiB). */
const MAX_BYTES = 4 * 1024 ** 3;

/** A range [start, end) of free bytes. */
interface FreeRange {
  start: number;
  end: number;
}

/**
 * A `WebAssembly.Memory` carved into blocks from JavaScript: the weights (once, at construction),
 * the KV caches and each forward's activations all live in it, so the kernels compute where the
 * data is. First fit over a sorted, coalesced free list; the memory grows when nothing fits.
 *
 * Growing detaches every `Float32Array` over the old buffer, so blocks hand out views derived on
 * each read ({@link ArenaBlock.view}); a byte offset stays valid across growth.
 */
export class WasmArena implements KvStorage {
  readonly memory: WasmMemory;
  private top = HEAP_START;
  /** Bytes at and past this offset were never handed out, so are still zero. */
  private clean = HEAP_START;
  private readonly free: FreeRange[] = [];

  constructor(initialBytes = 0) {
    this.memory = new webAssembly.Memory({ initial: Math.ceil((HEAP_START + initialBytes) / PAGE) });
  }

  /** `length` zeroed floats. */
  allocate(length: number): ArenaBlock {
    return new ArenaBlock(this, this.allocateBytes(4 * length), length);
  }

  /** A byte offset of `bytes` zeroed bytes, aligned to 64. */
  allocateBytes(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      if (r.end - r.start < size) continue;
      const at = r.start;
      r.start += size;
      if (r.start === r.end) this.free.splice(i, 1);
      new Uint8Array(this.memory.buffer, at, size).fill(0);
      return at;
    }
    const at = this.top;
    const end = at + size;
    if (end > this.memory.buffer.byteLength) this.grow(end);
    if (at < this.clean) new Uint8Array(this.memory.buffer, at, Math.min(end, this.clean) - at).fill(0);
    this.clean = Math.max(this.clean, end);
    this.top = end;
    return at;
  }

  /** Gives back the block of `bytes` bytes at `at` (as passed to and returned by {@link allocateBytes}). */
  release(at: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = 0;
    while (i < this.free.length && this.free[i]!.start < at) i++;
    this.free.splice(i, 0, { start: at, end: at + size });
    // Coalesce with the next range, then with the previous one.
    const r = this.free[i]!;
    const next = this.free[i + 1];
    if (next && next.start === r.end) {
      r.end = next.end;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.end === r.start) {
      prev.end = r.end;
      this.free.splice(i, 1);
    }
    // A free range that reaches the top gives its bytes back to the top.
    const last = this.free[this.free.length - 1];
    if (last && last.end === this.top) {
      this.top = last.start;
      this.free.pop();
    }
  }

  /** Bytes between the arena's start and its top (allocated or free below the top). */
  get usedBytes(): number {
    return this.top - HEAP_START;
  }

  private grow(end: number): void {
    if (end > MAX_BYTES) {
      throw new BackendError(
        'wasm-memory',
        `the WebAssembly kernels need ${(end / 2 ** 30).toFixed(2)} GiB of linear memory, over wasm32's 4 GiB: create the reference backend with { kernels: 'typescript' } for this model or cache size`,
      );
    }
    const have = this.memory.buffer.byteLength;
    // At least double, so a run of small allocations grows the memory a logarithmic number of times.
    const want = Math.min(MAX_BYTES, Math.max(end, 2 * have));
    try {
      this.memory.grow(Math.ceil((want - have) / PAGE));
    } catch (e) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        throw new BackendError('wasm-memory', `could not grow the WebAssembly kernels' memory to ${(end / 2 ** 20).toFixed(0)} MiB (${String(e)}): create the reference backend with { kernels: 'typescript' }`);
      }
    }
  }
}

/** `length` floats at byte offset `offset` of an arena. */
export class ArenaBlock implements KvBlock {
  private cached: Float32Array;
  private released = false;

  constructor(
    private readonly arena: WasmArena,
    readonly offset: number,
    readonly length: number,
  ) {
    this.cached = new Float32Array(arena.memory.buffer, offset, length);
  }

  /** The floats, over the memory's current buffer. */
  get view(): Float32Array {
    if (this.cached.buffer !== this.arena.memory.buffer) this.cached = new Float32Array(this.arena.memory.buffer, this.offset, this.length);
    return this.cached;
  }

  free(): void {
    if (this.released) return;
    this.released = true;
    this.arena.release(this.offset, 4 * this.length);
  }
}
