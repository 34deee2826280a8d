import { CacheError } from '../errors.js';
import type { ArrayKvCache, KvBlock, KvBlockStorage, KvElements } from './array-kv-cache.js';

/** What a {@link KvBlockPool} has handed out and kept. */
export interface KvBlockPoolStats {
  /** Allocations served from a block given back earlier. */
  readonly hits: number;
  /** Allocations that made a fresh typed array. */
  readonly misses: number;
  /** Bytes of the blocks the pool holds for reuse now. */
  readonly pooledBytes: number;
  readonly pooledBlocks: number;
}

/**
 * A block may be reused for a request up to this fraction shorter than it (the rest of its
 * elements stay unused): caches of sequences a few tokens apart, which a server makes all the
 * time, then share blocks.
 */
const SLACK = 1 / 8;

/**
 * Heap storage for {@link ArrayKvCache}s that keeps the blocks caches give back (on `dispose`,
 * growth, `replaceWith`) and hands them out again as they were, marked {@link KvBlock.dirty}: an
 * {@link ArrayKvCache} zeroes the rows it does not copy in, so graphs that read a cache's whole
 * capacity, masked, never meet another cache's old values.
 *
 * Why: the pages of a fresh typed array are mapped by the kernel on first touch, so filling a
 * new 200 MB block costs about 7× a copy into memory already touched (180 against 25 ms on this
 * project's 2-core dev machine). A server's caches come and go all the time (prefix-cache clones,
 * shadow copies, finished sequences); without reuse it spends its time in page faults.
 *
 * It keeps at most `maxBytes` (the oldest blocks go first), and a miss drops the blocks shorter
 * than what it asked for (the leftovers of a cache that grew, which no later request of that
 * cache wants).
 */
export class KvBlockPool<A extends KvElements> implements KvBlockStorage<A> {
  private pooled: A[] = [];
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private closed = false;

  /**
   * @param make A fresh, zeroed array of `length` elements.
   * @param maxBytes Bytes the pool keeps for reuse at most (0: none; a plain heap storage then).
   * @throws CacheError `bad-pool-size` for a `maxBytes` that is not a non-negative finite number.
   */
  constructor(
    private readonly make: (length: number) => A,
    readonly maxBytes: number,
  ) {
    if (!Number.isFinite(maxBytes) || maxBytes < 0) throw new CacheError('bad-pool-size', `a KV block pool's maxBytes must be a non-negative number; got ${String(maxBytes)}`);
  }

  get stats(): KvBlockPoolStats {
    return { hits: this.hits, misses: this.misses, pooledBytes: this.bytes, pooledBlocks: this.pooled.length };
  }

  /**
   * A block of `length` elements, `written` of which (default all) the caller copies in at once.
   * A block mostly left unwritten (`written` < half) is always fresh memory: its untouched pages
   * read as zeros from one shared page, about 4× cheaper to scan than memory holding values (10.7
   * against 43 ms per 200 MB here), and a graph that reads a cache's whole capacity, masked, scans
   * them on every step (a reused block made shadow-prefill's steps 14% slower at the Phi-3-mini
   * shape). Clones, grown caches that were full and scratch copies take reused blocks.
   */
  allocate(length: number, _layer?: number, written = length): KvBlock<A> {
    const mostlyWritten = 2 * written >= length;
    const i = mostlyWritten ? this.bestFit(length) : -1;
    let data: A;
    if (i < 0) {
      this.misses++;
      if (mostlyWritten) this.dropShorterThan(length);
      data = this.make(length);
    } else {
      this.hits++;
      data = this.pooled.splice(i, 1)[0]!;
      this.bytes -= data.byteLength;
    }
    const view = (data.length === length ? data : data.subarray(0, length)) as A;
    let given = false;
    return {
      view,
      // A reused array holds what its last cache left: its next cache zeroes what it does not write.
      ...(i < 0 ? {} : { dirty: true }),
      free: () => {
        if (given) return;
        given = true;
        this.giveBack(data);
      },
    };
  }

  /** Lets go of every pooled block (blocks handed out stay valid; given back later, they are kept again). */
  clear(): void {
    this.pooled = [];
    this.bytes = 0;
  }

  /**
   * Lets go of every pooled block and keeps none given back from now on (a backend's `dispose`:
   * caches that outlive it still allocate and free, but hold nothing in the pool).
   */
  close(): void {
    this.closed = true;
    this.clear();
  }

  /** The shortest pooled block of at least `length` elements and at most {@link SLACK} longer; -1 when none. */
  private bestFit(length: number): number {
    let best = -1;
    for (let i = 0; i < this.pooled.length; i++) {
      const n = this.pooled[i]!.length;
      if (n >= length && n <= length + Math.floor(length * SLACK) && (best < 0 || n < this.pooled[best]!.length)) best = i;
    }
    return best;
  }

  private dropShorterThan(length: number): void {
    const kept = this.pooled.filter((a) => a.length >= length);
    if (kept.length === this.pooled.length) return;
    this.pooled = kept;
    this.bytes = kept.reduce((n, a) => n + a.byteLength, 0);
  }

  private giveBack(data: A): void {
    if (this.closed || data.byteLength > this.maxBytes) return;
    while (this.bytes + data.byteLength > this.maxBytes) this.bytes -= this.pooled.shift()!.byteLength;
    this.pooled.push(data);
    this.bytes += data.byteLength;
  }
}
