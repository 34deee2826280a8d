import type { HostKvCache, KvElements } from '@ropeswitch/core';

/** Bytes of a memory page: one read per page maps it. */
const PAGE_BYTES = 4096;

/**
 * Reads the pages of each cache's storage that nobody has read yet, a budget at a time.
 *
 * The graph reads a cache's whole capacity every run (masked past its valid rows), and a cache
 * reserved ahead of its tokens sits on fresh memory whose pages the system maps on their first
 * access: one fault per 4 KiB page, about 25 ms for the 200 MB of a 4112-row cache at the Phi-3
 * shape (2 layers), paid by the first run that reads them. That run is the first decode step after
 * a prompt (its chunks read compact copies), or a shadow copy's second chunk (its first one has no
 * valid rows to read), so without this both steps carry that spike. Read once from here (a read
 * maps the system's shared zero page: no memory is used), the pages cost nothing more; the
 * faults go where the budget puts them, into a prompt's forward or over a copy's first steps.
 */
export class PagePrefault {
  /** Per cache: the storage last seen (layer 0's keys; a reserve or a swap replaces it) and its rows read from row 0. */
  private readonly read = new WeakMap<HostKvCache, { readonly storage: KvElements; rows: number }>();
  /** Keeps the reads observable (a read whose value is unused could be dropped). */
  private sink = 0;

  /** Rows of `cache`, from row 0, whose pages have been read or written: its valid rows at least. */
  readRows(cache: HostKvCache, valid: number): number {
    const seen = this.read.get(cache);
    return Math.max(valid, seen && seen.storage === cache.keys(0) ? seen.rows : 0);
  }

  /** Whether every page of `cache`'s capacity has been read (or written). */
  done(cache: HostKvCache, valid: number): boolean {
    return this.readRows(cache, valid) >= cache.capacity;
  }

  /**
   * Reads the pages of the rows past those already read, every head, layer, keys and values, up to
   * `budgetBytes` of storage (at least one row); returns the bytes of storage it read.
   */
  advance(cache: HostKvCache, valid: number, budgetBytes: number): number {
    const from = this.readRows(cache, valid);
    const { numLayers, numKvHeads, headDim } = cache.layout;
    const elementBytes = cache.dtype === 'float16' ? 2 : 4;
    const rowBytes = 2 * numLayers * numKvHeads * headDim * elementBytes;
    const to = Math.min(cache.capacity, from + Math.max(1, Math.floor(budgetBytes / rowBytes)));
    if (to <= from) return 0;
    const stride = PAGE_BYTES / elementBytes;
    let acc = 0;
    for (let l = 0; l < numLayers; l++) {
      for (const data of [cache.keys(l), cache.values(l)]) {
        for (let h = 0; h < numKvHeads; h++) {
          // A head's rows [from, to) are one run of elements: one read per page of it, and its last element.
          const start = cache.offset(h, from);
          const end = cache.offset(h, to);
          for (let i = start; i < end; i += stride) acc += data[i]!;
          acc += data[end - 1]!;
        }
      }
    }
    this.sink += acc;
    this.read.set(cache, { storage: cache.keys(0), rows: to });
    return (to - from) * rowBytes;
  }
}
