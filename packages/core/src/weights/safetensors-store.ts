/**
 * The `WeightStore` over one safetensors file whose header is already validated, whatever holds
 * its data section: the file reader (`safetensors-reader.ts`, Node) gives it a file descriptor's
 * reads, the in-memory one (`safetensors-bytes.ts`, browsers) the bytes themselves. Browser-safe.
 */

import { WeightsError } from '../errors.js';
import { decodeTensor, decodeTensorInto, dtypeByteSize } from './dtype.js';
import { type SafetensorsEntry, findEntry } from './safetensors-header.js';
import type { TensorInfo, WeightStore } from './weight-store.js';

/** Where a store's data section lives. */
export interface SafetensorsData {
  /** Copies `target.byteLength` bytes of the data section, from `begin` on (part of tensor `tensor`'s), into `target`. */
  readInto(begin: number, target: Uint8Array, tensor: string): void;
  /** Lets go of the data (called once, by the store's first `close`). */
  close(): void;
}

/** Called after each piece a store reads: the tensor and how many of its bytes. */
export type ReadListener = (tensor: string, bytes: number) => void;

/**
 * F16/BF16 tensors are read and widened in pieces of this many bytes, so converting a tensor holds
 * its float32 result and one piece, never its whole half-precision copy as well.
 */
const DECODE_PIECE_BYTES = 8 * 1024 * 1024;

export class SafetensorsStore implements WeightStore {
  readonly names: readonly string[];
  #data: SafetensorsData | undefined;
  #piece: Uint8Array | undefined;

  constructor(
    readonly file: string,
    private readonly entries: ReadonlyMap<string, SafetensorsEntry>,
    data: SafetensorsData,
    private readonly onRead?: ReadListener,
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
    const data = this.#data;
    if (data === undefined) throw new WeightsError('closed', `${this.file}: store is closed`, { file: this.file, tensor: name });
    const size = e.end - e.begin;
    if (e.dtype === 'F32') {
      // Read into an array of its own at offset 0: aligned, so the result is a view of it, never a second copy.
      const bytes = allocate(size, this.file, name);
      data.readInto(e.begin, bytes, name);
      this.onRead?.(name, size);
      return decodeTensor(bytes, 'F32');
    }
    const out = new Float32Array(allocate(size * (4 / dtypeByteSize(e.dtype)), this.file, name).buffer);
    const pieceBytes = Math.min(size, DECODE_PIECE_BYTES);
    if (!this.#piece || this.#piece.byteLength < pieceBytes) this.#piece = new Uint8Array(pieceBytes);
    const per = dtypeByteSize(e.dtype);
    for (let at = 0; at < size; at += DECODE_PIECE_BYTES) {
      const piece = this.#piece.subarray(0, Math.min(DECODE_PIECE_BYTES, size - at));
      data.readInto(e.begin + at, piece, name);
      decodeTensorInto(piece, e.dtype, out.subarray(at / per));
      this.onRead?.(name, piece.byteLength);
    }
    return out;
  }

  async close(): Promise<void> {
    const data = this.#data;
    this.#data = undefined;
    this.#piece = undefined;
    data?.close();
  }
}

function allocate(bytes: number, file: string, tensor: string): Uint8Array {
  try {
    return new Uint8Array(bytes);
  } catch (cause) {
    throw new WeightsError('too-large', `${file}: cannot allocate ${bytes} bytes for tensor '${tensor}'`, { file, tensor, cause });
  }
}
