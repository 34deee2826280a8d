/// <reference types="@webgpu/types" />
import { type AnglePrecision, RerotationTableCache, type RopeRegime, rerotationTables } from '@ropeswitch/core';
import { BufferUsage } from './gpu-flags.js';

/** cos/sin of one move on the device, `[tableRow][i]`, and the table row of each key of a span. */
export interface DeviceRerotationTables {
  readonly cos: GPUBuffer;
  readonly sin: GPUBuffer;
  /** Table row per key of the span (u32). */
  readonly rows: GPUBuffer;
  /** Buffers to destroy once the rotation is submitted (fresh tables and the row map). */
  readonly temporary: readonly GPUBuffer[];
}

/** One move's rows uploaded to the device: core's rows [0, rows) of a room of `capacity` rows. */
interface DeviceRows {
  cos: GPUBuffer;
  sin: GPUBuffer;
  /** Rows uploaded. */
  rows: number;
  /** Rows the buffers hold. */
  capacity: number;
}

/**
 * Rerotation cos/sin on the device, per (from, to, precision) move: rows of positions 0, 1, … are
 * computed on the CPU by core's {@link RerotationTableCache} (so bit for bit the reference
 * backend's values: `Math.fround(p·ω_to) − Math.fround(p·ω_from)` per pair) and uploaded once;
 * later calls upload only new rows. `prepare` does that ahead of the crossing. The device copy is
 * the core cache's mirror of the move, so it is matched and evicted with the CPU rows: at most
 * `maxEntries` moves are kept, least recently used freed first. Every table fits one storage
 * binding of `maxBindingBytes`: a move is memoised only for the positions that fit
 * ({@link maxRows}), and the caller rotates longer spans in pieces of that many keys.
 */
export class GpuRerotationTables {
  private readonly cpu: RerotationTableCache<DeviceRows>;

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBindingBytes: number,
    maxEntries = 8,
  ) {
    this.cpu = new RerotationTableCache<DeviceRows>(maxEntries, (d) => {
      d.cos.destroy();
      d.sin.destroy();
    });
  }

  /** Table rows (of `half` pairs) one binding holds: the most keys one rotation dispatch may take. */
  maxRows(half: number): number {
    return Math.max(1, Math.floor(this.maxBindingBytes / (4 * Math.max(1, half))));
  }

  /** Uploads rows [0, count) of a move now (rows already there are kept), at most {@link maxRows}. */
  prepare(from: RopeRegime, to: RopeRegime, count: number, precision: AnglePrecision): void {
    const rows = Math.min(count, this.maxRows(to.invFreq.length));
    if (rows > 0) this.entry(from, to, rows, precision);
  }

  /** Rows uploaded for a move (0 if none). */
  preparedCount(from: RopeRegime, to: RopeRegime, precision: AnglePrecision): number {
    return this.cpu.mirror(from, to, precision)?.rows ?? 0;
  }

  /**
   * Tables to rotate keys at `positions` from `from` to `to`. Dense position sets (the usual
   * 0 … n−1) use the memoised rows indexed by position; a few far positions, or positions past what
   * one binding of rows holds, get fresh tables of just those positions (`memoise` false: schedules
   * whose moves never come back, dynamic NTK). `positions` must be at most {@link maxRows} long.
   */
  forPositions(from: RopeRegime, to: RopeRegime, positions: Int32Array, precision: AnglePrecision, memoise: boolean): DeviceRerotationTables {
    let max = -1;
    for (let k = 0; k < positions.length; k++) if (positions[k]! > max) max = positions[k]!;
    if (memoise && max < 2 * positions.length + 64 && max < this.maxRows(to.invFreq.length)) {
      const e = this.entry(from, to, max + 1, precision);
      const rows = this.upload(new Uint32Array(positions.buffer, positions.byteOffset, positions.length));
      return { cos: e.cos, sin: e.sin, rows, temporary: [rows] };
    }
    const t = rerotationTables(from, to, positions, precision);
    const cos = this.upload(t.cos);
    const sin = this.upload(t.sin);
    const rows = this.upload(Uint32Array.from({ length: positions.length }, (_, k) => k));
    return { cos, sin, rows, temporary: [cos, sin, rows] };
  }

  /** Frees every table. */
  clear(): void {
    this.cpu.clear();
  }

  private entry(from: RopeRegime, to: RopeRegime, count: number, precision: AnglePrecision): DeviceRows {
    const cpu = this.cpu.tables(from, to, count, precision);
    const half = cpu.half;
    let d = this.cpu.mirror(from, to, precision);
    if (!d || d.capacity < count) {
      // Room doubles, so growing a row at a time re-uploads O(n) rows in all (up to one binding).
      const capacity = Math.min(this.maxRows(half), Math.max(count, 2 * (d?.capacity ?? 0)));
      const size = Math.max(16, capacity * half * 4);
      d = {
        cos: this.device.createBuffer({ size, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST }),
        sin: this.device.createBuffer({ size, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST }),
        rows: 0,
        capacity,
      };
      this.cpu.setMirror(from, to, precision, d); // frees the smaller buffers
    }
    if (d.rows < count) {
      const a = d.rows * half;
      const b = count * half;
      this.device.queue.writeBuffer(d.cos, a * 4, cpu.cos, a, b - a);
      this.device.queue.writeBuffer(d.sin, a * 4, cpu.sin, a, b - a);
      d.rows = count;
    }
    return d;
  }

  private upload(data: Float32Array | Uint32Array): GPUBuffer {
    const buffer = this.device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: BufferUsage.STORAGE, mappedAtCreation: true });
    const range = buffer.getMappedRange();
    if (data instanceof Float32Array) new Float32Array(range).set(data);
    else new Uint32Array(range).set(data);
    buffer.unmap();
    return buffer;
  }
}
