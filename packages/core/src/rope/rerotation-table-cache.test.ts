import { describe, expect, it } from 'vitest';
import { longRopeScaling } from '@ropeswitch/testkit';
import { DynamicNtkSchedule } from './dynamic-ntk-schedule.js';
import { LongRopeSchedule } from './long-rope-schedule.js';
import { type AnglePrecision, type RopeRegime, makeRegime } from './regime.js';
import { RerotationTableCache } from './rerotation-table-cache.js';
import { rerotationTables } from './rotary-tables.js';

const longRope = (half: number, seed: number) => {
  const f = (k: number) => Array.from({ length: half }, (_, i) => 1 + ((i * 7 + k * 3 + seed) % 11) / 3);
  return new LongRopeSchedule(10000, 2 * half, 'rotate-half', longRopeScaling({ shortFactor: f(1), longFactor: f(2) }));
};

/** Bit-level view, so -0 vs 0 and every last ulp count. */
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

function expectRowsEqualFresh(memo: RerotationTableCache, from: RopeRegime, to: RopeRegime, count: number, precision: AnglePrecision): void {
  const t = memo.tables(from, to, count, precision);
  expect(t.count).toBeGreaterThanOrEqual(count);
  const fresh = rerotationTables(from, to, Array.from({ length: count }, (_, p) => p), precision);
  expect(bits(t.cos.subarray(0, count * t.half))).toEqual(bits(fresh.cos));
  expect(bits(t.sin.subarray(0, count * t.half))).toEqual(bits(fresh.sin));
}

describe('RerotationTableCache', () => {
  for (const precision of ['float32', 'float64'] as const) {
    it(`row p equals fresh rerotation tables of [p] bit for bit, grown in uneven steps (${precision})`, () => {
      const s = longRope(8, 1);
      const memo = new RerotationTableCache();
      // Grow 0 → 1 → 7 → 300 → 301 → 4100 rows: every growth path (first rows, doubling, exact fit).
      for (const count of [1, 7, 300, 301, 4100]) {
        memo.prepare(s.short, s.long, count, precision);
        expect(memo.preparedCount(s.short, s.long, precision)).toBe(count);
        expectRowsEqualFresh(memo, s.short, s.long, count, precision);
      }
      // The other direction and the far positions HF rounds the most (p ≈ 4100) included.
      expectRowsEqualFresh(memo, s.long, s.short, 4100, precision);
    });
  }

  it('dynamic NTK regimes and partial rotary sizes', () => {
    const s = new DynamicNtkSchedule(10000, 6, 'interleaved', { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 64 });
    const memo = new RerotationTableCache();
    expectRowsEqualFresh(memo, s.regimeFor(10), s.regimeFor(90), 130, 'float32');
  });

  it('asking for fewer rows than prepared returns the prepared ones, computing nothing', () => {
    const s = longRope(4, 2);
    const memo = new RerotationTableCache();
    memo.prepare(s.short, s.long, 64);
    const a = memo.tables(s.short, s.long, 10);
    const b = memo.tables(s.short, s.long, 64);
    expect(a.cos.buffer).toBe(b.cos.buffer);
    expect(memo.preparedCount(s.short, s.long)).toBe(64);
  });

  it('shares tables between copies of one regime (same id and numbers), never between same-named regimes of two models', () => {
    const a = longRope(4, 3);
    const copy = longRope(4, 3); // another schedule object, the same model
    const other = longRope(4, 4); // another model: same ids, other factors
    const memo = new RerotationTableCache();
    memo.prepare(a.short, a.long, 100);
    expect(memo.preparedCount(copy.short, copy.long)).toBe(100);
    expect(memo.preparedCount(other.short, other.long)).toBe(0);
    expectRowsEqualFresh(memo, other.short, other.long, 100, 'float32');
    expectRowsEqualFresh(memo, a.short, a.long, 100, 'float32');
    // Attention factors count too.
    const scaled = makeRegime(a.long.id, 'long', a.long.invFreq, a.long.invFreq64, a.long.attentionFactor64 * 1.5);
    expect(memo.preparedCount(a.short, scaled)).toBe(0);
  });

  it('keeps at most maxEntries moves, the least recently used dropped first', () => {
    const s = new DynamicNtkSchedule(10000, 8, 'rotate-half', { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 16 });
    const memo = new RerotationTableCache(2);
    const base = s.regimeFor(1);
    memo.prepare(base, s.regimeFor(20), 8);
    memo.prepare(base, s.regimeFor(21), 8);
    memo.tables(base, s.regimeFor(20), 8); // used again: now the most recent
    memo.prepare(base, s.regimeFor(22), 8);
    expect(memo.preparedCount(base, s.regimeFor(20))).toBe(8);
    expect(memo.preparedCount(base, s.regimeFor(21))).toBe(0);
    expect(memo.preparedCount(base, s.regimeFor(22))).toBe(8);
    memo.clear();
    expect(memo.preparedCount(base, s.regimeFor(20))).toBe(0);
  });

  it('keeps a mirror with its move and releases it when the move is dropped, replaced, rematched or cleared', () => {
    const s = new DynamicNtkSchedule(10000, 8, 'rotate-half', { type: 'dynamic', factor: 2, originalMaxPositionEmbeddings: 16 });
    const released: string[] = [];
    const memo = new RerotationTableCache<string>(2, (m) => released.push(m));
    const base = s.regimeFor(1);
    const [r20, r21, r22] = [s.regimeFor(20), s.regimeFor(21), s.regimeFor(22)];
    expect(memo.mirror(base, r20)).toBeUndefined();
    memo.tables(base, r20, 4);
    memo.setMirror(base, r20, 'float32', 'm20');
    memo.setMirror(base, r21, 'float32', 'm21'); // a move without rows yet is kept too
    expect(memo.mirror(base, r20)).toBe('m20');
    expect(memo.mirror(base, r20, 'float64')).toBeUndefined();
    memo.setMirror(base, r20, 'float32', 'm20'); // the same copy again: nothing released
    memo.setMirror(base, r20, 'float32', 'm20b'); // a replacement releases the old copy
    expect(released).toEqual(['m20']);
    memo.prepare(base, r22, 4); // evicts the least recently used move (21) with its mirror
    expect(released).toEqual(['m20', 'm21']);
    expect(memo.mirror(base, r21)).toBeUndefined();
    // Another model's regime of the same id: the kept move and its mirror are dropped.
    const other = makeRegime(r20.id, r20.kind, r20.invFreq.map((f) => f * 2), r20.invFreq64.map((f) => f * 2), r20.attentionFactor64);
    expect(memo.mirror(base, other)).toBeUndefined();
    memo.tables(base, other, 4);
    expect(released).toEqual(['m20', 'm21', 'm20b']);
    memo.setMirror(base, r22, 'float32', 'm22');
    memo.clear();
    expect(released).toEqual(['m20', 'm21', 'm20b', 'm22']);
    expect(memo.mirror(base, r22)).toBeUndefined();
  });
});
