import { BackendError } from '@ropeswitch/core';
import { MAX_PAGES, type WasmMemory, webAssembly } from './webassembly-api.js';
import type { KvBlock, KvStorage } from '../decoder-kernels.js';

const PAGE = 65536;
/** The kernels have no data segments; the first page stays unused so no block sits at address 0. */
const HEAP_START = PAGE;
/** Blocks start on cache-line boundaries (and so suit v128 loads). */
const ALIGN = 64;
/** wasm32's ceiling (65536 pages of 64 KiB). */
const MAX_BYTES = MAX_PAGES * PAGE;

/** A range [start, end) of free bytes. */
interface FreeRange {
  start: number;
  end: number;
}

/** Options of a {@link WasmArena}. */
export interface WasmArenaOptions {
  /** Bytes to commit at once (the weights it will hold, say), so it need not grow for them. */
  readonly initialBytes?: number;
  /** A shared memory (a `SharedArrayBuffer`), which worker threads can compute on too. */
  readonly shared?: boolean;
  /** Names the arena in errors (e.g. `arena 2 of 9 (layers 8–11)`). */
  readonly label?: string;
}

/**
 * A `WebAssembly.Memory` carved into blocks from JavaScript: weights, KV caches and activations all
 * live in it, so the kernels compute where the data is. First fit over a sorted, coalesced free
 * list; the memory grows when nothing fits, up to wasm32's 4 GiB.
 *
 * Growing an unshared memory detaches every view of its old buffer; a shared one keeps old views
 * valid but hands out a new, longer buffer. Either way blocks derive their view on each read
 * ({@link ArenaBlock.view}), a byte offset stays valid across growth, and {@link owns} knows every
 * buffer the memory has had.
 */
export class WasmArena implements KvStorage {
  readonly memory: WasmMemory;
  readonly shared: boolean;
  readonly label: string;
  private top = HEAP_START;
  /** Bytes at and past this offset were never handed out, so are still zero. */
  private clean = HEAP_START;
  private readonly free: FreeRange[] = [];
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  constructor(options: WasmArenaOptions = {}) {
    this.shared = options.shared ?? false;
    this.label = options.label ?? 'the WebAssembly memory';
    const initial = Math.min(MAX_PAGES, Math.ceil((HEAP_START + (options.initialBytes ?? 0)) / PAGE));
    try {
      this.memory = new webAssembly.Memory(this.shared ? { initial, maximum: MAX_PAGES, shared: true } : { initial });
    } catch (e) {
      throw new BackendError('wasm-memory', `could not create ${this.label} of ${((initial * PAGE) / 2 ** 20).toFixed(0)} MiB (${String(e)})`);
    }
  }

  /** The memory's current buffer (recorded, so views over it are known to be this arena's). */
  get buffer(): ArrayBufferLike {
    const b = this.memory.buffer;
    this.buffers.add(b);
    return b;
  }

  /** Whether `buffer` is (or was, before a growth) this arena's memory. */
  owns(buffer: ArrayBufferLike): boolean {
    return this.buffers.has(buffer);
  }

  /**
   * `length` floats for a KV cache or an activation, left as they are (`layer` is for storage that
   * places layers apart: one arena ignores it). Both write every element before reading it, so
   * memory taken back is not zeroed again: a shadow copy's 4096-row cache starts in microseconds,
   * and fresh pages are first touched row by row as the cache fills.
   */
  allocate(length: number, _layer?: number): ArenaBlock {
    return new ArenaBlock(this, this.allocateBytes(4 * length, false), length);
  }

  /** A byte offset of `bytes` bytes, aligned to 64: zeroed unless `zeroed` is false (then as they are). */
  allocateBytes(bytes: number, zeroed = true): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const r = this.free[i]!;
      if (r.end - r.start < size) continue;
      const at = r.start;
      r.start += size;
      if (r.start === r.end) this.free.splice(i, 1);
      if (zeroed) new Uint8Array(this.buffer, at, size).fill(0);
      return at;
    }
    const at = this.top;
    const end = at + size;
    if (end > this.memory.buffer.byteLength) this.grow(end);
    if (zeroed && at < this.clean) new Uint8Array(this.buffer, at, Math.min(end, this.clean) - at).fill(0);
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
        `${this.label} would need ${(end / 2 ** 30).toFixed(2)} GiB, over wasm32's 4 GiB: a smaller cache, smaller weights ({ weights: 'int8' | 'float16' | 'bfloat16' }), or { kernels: 'typescript' }`,
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
        throw new BackendError('wasm-memory', `could not grow ${this.label} to ${(end / 2 ** 20).toFixed(0)} MiB (${String(e)}): a smaller cache or smaller weights, or { kernels: 'typescript' }`);
      }
    }
  }
}

/** `length` floats at byte offset `offset` of an arena. */
export class ArenaBlock implements KvBlock {
  private cached: Float32Array;
  private released = false;

  constructor(
    readonly arena: WasmArena,
    readonly offset: number,
    readonly length: number,
  ) {
    this.cached = new Float32Array(arena.buffer, offset, length);
  }

  /** The floats, over the memory's current buffer. */
  get view(): Float32Array {
    const buffer = this.arena.memory.buffer;
    if (this.cached.buffer !== buffer) this.cached = new Float32Array(this.arena.buffer, this.offset, this.length);
    return this.cached;
  }

  free(): void {
    if (this.released) return;
    this.released = true;
    this.arena.release(this.offset, 4 * this.length);
  }
}
