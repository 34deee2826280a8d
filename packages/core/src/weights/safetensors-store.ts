/**
 * The `WeightStore` over one safetensors file whose header is already validated, whatever holds
 * its data section: the file reader (`safetensors-reader.ts`, Node) gives it a file descriptor's
 * reads, the in-memory one (`safetensors-bytes.ts`, browsers) the bytes themselves. Browser-safe.
 */

import { WeightsError } from '../errors.js';
import { decodeTensor } from './dtype.js';
import { type SafetensorsEntry, findEntry } from './safetensors-header.js';
import type { TensorInfo, WeightStore } from './weight-store.js';

/** Where a store's data section lives. */
export interface SafetensorsData {
  /**
   * A copy of bytes [begin, end) of the data section (tensor `tensor`'s), in an ArrayBuffer of its
   * own at offset 0: aligned for a zero-copy F32 view, and the caller's to keep or change.
   */
  read(begin: number, end: number, tensor: string): Uint8Array;
  /** Lets go of the data (called once, by the store's first `close`). */
  close(): void;
}

export class SafetensorsStore implements WeightStore {
  readonly names: readonly string[];
  #data: SafetensorsData | undefined;

  constructor(
    readonly file: string,
    private readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    data: SafetensorsData,
  ) {
    this.#data = data;
    this.names = Object.freeze([...entries.keys()]);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = findEntry(this.entries, name, this.file);
    return { name: e.name, dtype: e.dtype, shape: e.shape };
  }

  get(name: string, expectedShape?: readonly number[]): Float32Array {
    const e = findEntry(this.entries, name, this.file, expectedShape);
    if (this.#data === undefined) throw new WeightsError('closed', `${this.file}: store is closed`, { file: this.file, tensor: name });
    return decodeTensor(this.#data.read(e.begin, e.end, name), e.dtype);
  }

  async close(): Promise<void> {
    const data = this.#data;
    this.#data = undefined;
    data?.close();
  }
}
