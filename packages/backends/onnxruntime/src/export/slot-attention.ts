import type { onnx as O } from 'onnx-proto';
import { attr, valueInfo } from '../onnx/graph-nodes.js';
import { DataType } from '../onnx/onnx-namespace.js';
import type { GraphBuilder } from './graph-builder.js';
import { DecoderIo } from './decoder-io.js';

/** Heads of the attention {@link SlotAttention} builds. */
export interface AttentionShape {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/** Element type of the caller-owned caches a graph takes (and of the new rows it returns). */
export type CacheElemType = typeof DataType.FLOAT | typeof DataType.FLOAT16;

/** One slot's token range and masks, shared by every layer. */
interface SlotMasks {
  readonly start: string;
  readonly stop: string;
  readonly capacity: string;
  readonly pastMask: string;
  readonly newMask: string;
}

/**
 * The attention of the {@link DecoderIo} contract: up to `slots` rows packed on one token axis, each
 * attending to its own caller-owned cache (`past_key.{l}.{s}`, masked past `past_lengths[s]`) and,
 * causally, to its own new tokens, never to another row's. Plain ai.onnx ops (opset ≥ 15), so the
 * exporter's graph and a rewritten onnxruntime-genai graph share it.
 *
 * With float16 caches (`cacheElemType` `FLOAT16`: the storage of a core `Float16KvCache`), the
 * past keys and values are cast to float32 inside the graph and attention runs in float32; the new
 * rows are returned as float16 (the Cast rounds to nearest, ties to even) and the run's own tokens
 * attend to those rounded rows too, so a sequence's results do not depend on how its prefill was
 * cut into runs: every key and value attended to is the one the cache holds.
 *
 * Scores are `MatMul(Q, Transpose(K))`: onnxruntime fuses the transpose of the cache into the
 * product, reading the keys in their stored layout (no copy); a transpose on the query side instead
 * selected a FusedMatMul path 3× slower (measured at cache 4096).
 */
export class SlotAttention {
  private readonly slot: SlotMasks[];
  private readonly end: string;

  /** Adds the per-slot ranges and masks (once per graph). */
  constructor(
    private readonly b: GraphBuilder,
    private readonly shape: AttentionShape,
    readonly slots: number,
    private readonly cacheElemType: CacheElemType = DataType.FLOAT,
  ) {
    const zero = b.float(0);
    const minusInf = b.float(-Infinity);
    this.end = b.int64([Number.MAX_SAFE_INTEGER]);
    this.slot = Array.from({ length: slots }, (_, s) => {
      const start = b.op('Slice', [DecoderIo.rowOffsets, b.int64([s]), b.int64([s + 1])]); // [1]
      const stop = b.op('Slice', [DecoderIo.rowOffsets, b.int64([s + 1]), b.int64([s + 2])]);
      const pastLength = b.op('Slice', [DecoderIo.pastLengths, b.int64([s]), b.int64([s + 1])]);
      const capacity = b.op('Shape', [DecoderIo.pastKey(0, s)], { start: attr.int(1), end: attr.int(2) }); // [1]
      // Past mask [capacity]: row j is visible iff j < past_length.
      const pastIdx = b.op('Range', [b.int64([0], []), b.op('Squeeze', [capacity]), b.int64([1], [])]);
      const pastMask = b.op('Where', [b.op('Less', [pastIdx, pastLength]), zero, minusInf]);
      // Causal mask of the slot's new tokens [S][S]: token t sees u ≤ t.
      const newIdx = b.op('Range', [b.int64([0], []), b.op('Squeeze', [b.op('Sub', [stop, start])]), b.int64([1], [])]);
      const cols = b.op('Unsqueeze', [newIdx, b.int64([0])]);
      const rows = b.op('Unsqueeze', [newIdx, b.int64([1])]);
      const newMask = b.op('Where', [b.op('LessOrEqual', [cols, rows]), zero, minusInf]);
      return { start, stop, capacity, pastMask, newMask };
    });
  }

  /** The row-slot inputs shared by every layer (`row_offsets`, `past_lengths`). */
  slotInputs(): O.IValueInfoProto[] {
    return [valueInfo(DecoderIo.rowOffsets, DataType.INT64, [this.slots + 1]), valueInfo(DecoderIo.pastLengths, DataType.INT64, [this.slots])];
  }

  /** Layer `l`'s cache inputs, every slot's. */
  cacheInputs(l: number): O.IValueInfoProto[] {
    const { numKvHeads, headDim } = this.shape;
    return Array.from({ length: this.slots }, (_, s) => [
      valueInfo(DecoderIo.pastKey(l, s), this.cacheElemType, [numKvHeads, `capacity_${s}`, headDim]),
      valueInfo(DecoderIo.pastValue(l, s), this.cacheElemType, [numKvHeads, `capacity_${s}`, headDim]),
    ]).flat();
  }

  /** Layer `l`'s new-row outputs (`new_key.{l}`, `new_value.{l}`). */
  newRowOutputs(l: number): O.IValueInfoProto[] {
    const { numKvHeads, headDim } = this.shape;
    const t = this.cacheElemType;
    return [valueInfo(DecoderIo.newKey(l), t, [numKvHeads, 'tokens', headDim]), valueInfo(DecoderIo.newValue(l), t, [numKvHeads, 'tokens', headDim])];
  }

  /**
   * Layer `l`'s attention. `q` `[T][numHeads][D]` (rotated, score scale applied), `k`
   * `[T][kvHeads][D]` (rotated), `v` `[T][kvHeads·D]`. Emits the graph outputs `new_key.{l}` /
   * `new_value.{l}` (`[kvHead][T][D]`) and returns the context `[T][numHeads·D]`.
   */
  attend(l: number, q: string, k: string, v: string): string {
    const { b } = this;
    const { numHeads, numKvHeads, headDim: D } = this.shape;
    const group = numHeads / numKvHeads;
    // New rows in cache layout [kvHead][T][D]: graph outputs, and this run's own keys/values.
    const half = this.cacheElemType === DataType.FLOAT16;
    const rows = (x: string, name: string): string => {
      const t = b.op('Transpose', [x], { perm: attr.ints([1, 0, 2]) }, half ? undefined : name);
      // float16 caches: return the rows rounded, and attend to the rounded rows, as later runs will.
      return half ? this.toFloat(b.op('Cast', [t], { to: attr.int(DataType.FLOAT16) }, name)) : t;
    };
    const newK = rows(k, DecoderIo.newKey(l));
    const newV = rows(b.op('Reshape', [v, b.int64([-1, numKvHeads, D])]), DecoderIo.newValue(l));
    const pastK = (s: number) => (half ? this.toFloat(DecoderIo.pastKey(l, s)) : DecoderIo.pastKey(l, s));
    const pastV = (s: number) => (half ? this.toFloat(DecoderIo.pastValue(l, s)) : DecoderIo.pastValue(l, s));
    // Queries grouped by kv head: [kvHead][group][T][D] (query head h uses kv head h / group).
    const q4 = b.op('Transpose', [b.op('Reshape', [q, b.int64([-1, numKvHeads, group, D])])], { perm: attr.ints([1, 2, 0, 3]) });
    const keysT = (keys: string) => b.op('Transpose', [b.op('Unsqueeze', [keys, b.int64([1])])], { perm: attr.ints([0, 1, 3, 2]) });
    const single = this.slots === 1;
    const contexts = this.slot.map(({ start, stop, capacity, pastMask, newMask }, s) => {
      const qs = single ? q4 : b.op('Slice', [q4, start, stop, b.int64([2])]);
      const ks = single ? newK : b.op('Slice', [newK, start, stop, b.int64([1])]);
      const vs = single ? newV : b.op('Slice', [newV, start, stop, b.int64([1])]);
      const pastScores = b.op('Add', [b.op('MatMul', [qs, keysT(pastK(s))]), pastMask]); // [kvHead][group][S][cap]
      const newScores = b.op('Add', [b.op('MatMul', [qs, keysT(ks)]), newMask]);
      const probs = b.op('Softmax', [b.op('Concat', [pastScores, newScores], { axis: attr.int(3) })], { axis: attr.int(-1) });
      const pastProbs = b.op('Slice', [probs, b.int64([0]), capacity, b.int64([3])]);
      const newProbs = b.op('Slice', [probs, capacity, this.end, b.int64([3])]);
      return b.op('Add', [
        b.op('MatMul', [pastProbs, b.op('Unsqueeze', [pastV(s), b.int64([1])])]),
        b.op('MatMul', [newProbs, b.op('Unsqueeze', [vs, b.int64([1])])]),
      ]); // [kvHead][group][S][D]
    });
    const ctx = single ? contexts[0]! : b.op('Concat', contexts, { axis: attr.int(2) });
    return b.op('Reshape', [b.op('Transpose', [ctx], { perm: attr.ints([2, 0, 1, 3]) }), b.int64([-1, numHeads * D])]);
  }

  private toFloat(x: string): string {
    return this.b.op('Cast', [x], { to: attr.int(DataType.FLOAT) });
  }
}
