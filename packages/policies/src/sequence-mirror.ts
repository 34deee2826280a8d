import type { KvCache } from '@ropeswitch/core';

/**
 * A sequence's cached token ids and positions as a policy last saw them, kept beside its cache and
 * extended as the policy's forwards commit new rows, so a step that needs some of them copies
 * nothing out of the cache (`KvCache.tokens()` copies the whole sequence). Trusted while the
 * cache's `revision` is the one the mirror recorded: anything else (a crop, a rebuild, a forward
 * that bypassed the policy) makes {@link matches} false, and the owner compares and {@link read}s
 * again.
 */
export class SequenceMirror {
  private tokenIds: Int32Array = new Int32Array(64);
  private positionIds: Int32Array = new Int32Array(64);
  private size = 0;
  private revision: number | undefined;

  /** A mirror of `cache` as it is now. */
  static of(cache: KvCache): SequenceMirror {
    const m = new SequenceMirror();
    m.read(cache);
    return m;
  }

  /** Whether the mirror holds what `cache` holds (nobody changed the cache since it was recorded). */
  matches(cache: KvCache): boolean {
    return cache.revision !== undefined && cache.revision === this.revision && cache.length === this.size;
  }

  /**
   * Reads the whole sequence from `cache`: its copies of the tokens and positions become the
   * mirror's arrays (native copies, no loop: a copy starts at a decode step, often before the JIT
   * has seen this path).
   */
  read(cache: KvCache): void {
    this.tokenIds = cache.tokens();
    this.positionIds = cache.positions();
    this.size = this.tokenIds.length;
    this.revision = cache.revision;
  }

  /**
   * `cache` committed `tokens` (at `positions`) after what the mirror holds: extend it, and trust
   * it at the cache's new revision. A cache that does not end where the mirror and the new rows do
   * is read again.
   */
  follow(cache: KvCache, tokens: ArrayLike<number>, positions: ArrayLike<number>): void {
    if (cache.length !== this.size + tokens.length) {
      this.read(cache);
      return;
    }
    this.append(tokens, positions);
    this.revision = cache.revision;
  }

  /** Token ids from index `from` on (a view: valid until the mirror changes). */
  tokensFrom(from: number): Int32Array {
    return this.tokenIds.subarray(from, this.size);
  }

  /** Positions from index `from` on (a view). */
  positionsFrom(from: number): Int32Array {
    return this.positionIds.subarray(from, this.size);
  }

  private append(tokens: ArrayLike<number>, positions: ArrayLike<number>): void {
    const need = this.size + tokens.length;
    if (need > this.tokenIds.length) {
      const cap = Math.max(need, 2 * this.tokenIds.length, 64);
      const t = new Int32Array(cap);
      const p = new Int32Array(cap);
      t.set(this.tokenIds.subarray(0, this.size));
      p.set(this.positionIds.subarray(0, this.size));
      this.tokenIds = t;
      this.positionIds = p;
    }
    for (let i = 0; i < tokens.length; i++) {
      this.tokenIds[this.size + i] = tokens[i]!;
      this.positionIds[this.size + i] = positions[i]!;
    }
    this.size = need;
  }
}
