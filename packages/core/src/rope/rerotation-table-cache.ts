import type { AnglePrecision, RopeRegime } from './regime.js';
import { type RotaryTables, writeRerotationRow } from './rotary-tables.js';

/** Tables of one (from, to, precision) move, row p for position p, rows [0, count) computed. */
interface Entry<Mirror> {
  readonly from: RopeRegime;
  readonly to: RopeRegime;
  readonly precision: AnglePrecision;
  count: number;
  cos: Float32Array;
  sin: Float32Array;
  /** A copy of the rows kept elsewhere (see {@link RerotationTableCache.setMirror}). */
  mirror?: Mirror;
}

/**
 * Memoised rerotation tables, like HF's SinkCache kept its rerotation cos/sin: per (from regime,
 * to regime, angle precision), the rows of positions 0, 1, 2, … computed once and grown on demand
 * over longer prefixes. Row p equals `rerotationTables(from, to, [p], precision)` bit for bit (the
 * same code writes both). Layout: `[position][i]`, i < r/2, so row p starts at `p · half`.
 *
 * Regimes are matched by id and checked by content (frequencies and attention factors), so two
 * schedules' copies of one regime share tables and two models' same-named regimes never do. At
 * most `maxEntries` moves are kept, least recently used dropped first (dynamic NTK makes a new
 * regime at every step).
 *
 * A backend that uploads the rows (to GPU buffers) attaches its copy to the move as a `Mirror`
 * ({@link setMirror}), so the copy is matched, kept and dropped with the rows: `releaseMirror`
 * frees it when its move is dropped, replaced or cleared.
 */
export class RerotationTableCache<Mirror = never> {
  private readonly entries = new Map<string, Entry<Mirror>>();

  constructor(
    readonly maxEntries = 8,
    private readonly releaseMirror: (mirror: Mirror) => void = () => undefined,
  ) {}

  /** Tables covering positions [0, count) (rows past `count` may be present). */
  tables(from: RopeRegime, to: RopeRegime, count: number, precision: AnglePrecision = 'float32'): RotaryTables {
    const e = this.entry(from, to, precision);
    this.extend(e, count);
    const half = to.invFreq.length;
    return { count: e.count, half, cos: e.cos.subarray(0, e.count * half), sin: e.sin.subarray(0, e.count * half) };
  }

  /**
   * Computes the rows of positions [0, count) now, so a later rotation of keys at those positions
   * pays only the pass over the keys. Rows already there are kept; call it with growing counts to
   * spread the work.
   */
  prepare(from: RopeRegime, to: RopeRegime, count: number, precision: AnglePrecision = 'float32'): void {
    this.extend(this.entry(from, to, precision), count);
  }

  /** Rows computed so far for this move (0 if none). */
  preparedCount(from: RopeRegime, to: RopeRegime, precision: AnglePrecision = 'float32'): number {
    return this.kept(from, to, precision)?.count ?? 0;
  }

  /** The copy attached to this move's rows, if the move is kept and has one. */
  mirror(from: RopeRegime, to: RopeRegime, precision: AnglePrecision = 'float32'): Mirror | undefined {
    return this.kept(from, to, precision)?.mirror;
  }

  /** Attaches `mirror` to this move's rows (kept from now on, as most recently used), releasing the copy it replaces. */
  setMirror(from: RopeRegime, to: RopeRegime, precision: AnglePrecision, mirror: Mirror): void {
    const e = this.entry(from, to, precision);
    if (e.mirror !== undefined && e.mirror !== mirror) this.releaseMirror(e.mirror);
    e.mirror = mirror;
  }

  clear(): void {
    for (const e of this.entries.values()) this.drop(e);
    this.entries.clear();
  }

  /** The entry of this move, if kept, without touching its recency. */
  private kept(from: RopeRegime, to: RopeRegime, precision: AnglePrecision): Entry<Mirror> | undefined {
    const e = this.entries.get(key(from, to, precision));
    return e && sameRegime(e.from, from) && sameRegime(e.to, to) ? e : undefined;
  }

  private entry(from: RopeRegime, to: RopeRegime, precision: AnglePrecision): Entry<Mirror> {
    const k = key(from, to, precision);
    let e = this.entries.get(k);
    // Same id but other content (another model's regime of the same name): start over.
    if (e && !(sameRegime(e.from, from) && sameRegime(e.to, to))) {
      this.drop(e);
      e = undefined;
    }
    this.entries.delete(k);
    e ??= { from, to, precision, count: 0, cos: new Float32Array(0), sin: new Float32Array(0) };
    this.entries.set(k, e); // most recently used last
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value!;
      this.drop(this.entries.get(oldest)!);
      this.entries.delete(oldest);
    }
    return e;
  }

  private drop(e: Entry<Mirror>): void {
    if (e.mirror !== undefined) this.releaseMirror(e.mirror);
  }

  private extend(e: Entry<Mirror>, count: number): void {
    if (count <= e.count) return;
    const half = e.to.invFreq.length;
    if (count * half > e.cos.length) {
      // Room doubles, so growing one row at a time stays linear; only the new rows are computed.
      const rows = Math.max(count, 2 * e.count);
      const cos = new Float32Array(rows * half);
      const sin = new Float32Array(rows * half);
      cos.set(e.cos.subarray(0, e.count * half));
      sin.set(e.sin.subarray(0, e.count * half));
      e.cos = cos;
      e.sin = sin;
    }
    for (let p = e.count; p < count; p++) writeRerotationRow(e.from, e.to, p, e.precision, e.cos, e.sin, p * half);
    e.count = count;
  }
}

function key(from: RopeRegime, to: RopeRegime, precision: AnglePrecision): string {
  return `${precision}\u0000${from.id}\u0000${to.id}`;
}

/** Same rotation: one object, or the same id with the same frequencies and factors. */
function sameRegime(a: RopeRegime, b: RopeRegime): boolean {
  if (a === b) return true;
  if (a.id !== b.id || a.attentionFactor !== b.attentionFactor || a.attentionFactor64 !== b.attentionFactor64) return false;
  if (a.invFreq.length !== b.invFreq.length || a.invFreq64.length !== b.invFreq64.length) return false;
  for (let i = 0; i < a.invFreq.length; i++) if (a.invFreq[i] !== b.invFreq[i]) return false;
  for (let i = 0; i < a.invFreq64.length; i++) if (a.invFreq64[i] !== b.invFreq64[i]) return false;
  return true;
}
