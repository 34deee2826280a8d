import type { Hash } from 'node:crypto';
import { type DecoderWeightSource, type WeightStore, storedBytes } from '@ropeswitch/core';

/** Where an export stands: what a progress bar shows. */
export interface ExportProgress {
  /**
   * `digest`: hashing the weights for the cache key (only without `checkpointDir`); `export`:
   * reading, converting and writing them; `verify`: checking a cached export; `load`: onnxruntime
   * loading the model (one event, at its start).
   */
  readonly phase: 'digest' | 'export' | 'verify' | 'load';
  /** Checkpoint bytes read in this phase so far (as stored: BF16 counts 2 a value). */
  readonly bytesDone: number;
  /** Bytes of every tensor of the checkpoint. */
  readonly totalBytes: number;
  /** The tensor just read, in `digest` and `export`. */
  readonly tensor?: string;
}

/** Stored bytes of every tensor of `store`: the `totalBytes` of its progress events. */
export function checkpointBytes(store: WeightStore): number {
  let total = 0;
  for (const name of store.names) total += storedBytes(store.info(name));
  return total;
}

/**
 * `store` as a decoder-weight source that hashes every tensor read into `hash` (name, shape,
 * float32 bytes, in read order) and reports each read to `onRead` (its stored bytes).
 */
export function observedSource(store: WeightStore, hash: Hash, onRead?: (tensor: string, bytes: number) => void): DecoderWeightSource {
  return {
    get(name, shape) {
      const t = store.get(name, shape);
      hash.update(`${name}:${(shape ?? []).join('x')};`);
      hash.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
      onRead?.(name, storedBytes(store.info(name)));
      return t;
    },
  };
}
