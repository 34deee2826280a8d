/**
 * A `WeightStore` over a whole `.safetensors` file already in memory (a `fetch` response's
 * `arrayBuffer()`, a `File` from an `<input>`): no file system, so it runs in browsers and workers.
 * The header is validated on open, as the file reader does; each `get` decodes one tensor into an
 * array of its own, so callers may keep or change it without touching the file's bytes.
 */

import { WeightsError } from '../errors.js';
import { decodeTensor } from './dtype.js';
import { type SafetensorsEntry, findEntry, parseSafetensorsHeader, readHeaderLength } from './safetensors-header.js';
import type { TensorInfo, WeightStore } from './weight-store.js';

class SafetensorsBytesStore implements WeightStore {
  readonly names: readonly string[];
  #data: Uint8Array | undefined;

  constructor(
    readonly file: string,
    data: Uint8Array,
    private readonly entries: Map<string, SafetensorsEntry>,
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
    // slice: a copy in its own ArrayBuffer at offset 0, aligned for a zero-copy F32 view.
    return decodeTensor(this.#data.slice(e.begin, e.end), e.dtype);
  }

  async close(): Promise<void> {
    this.#data = undefined; // lets the file's bytes be collected once the caller drops them too
  }
}

/**
 * Opens a safetensors file held in memory. `file` names it in error messages (a URL or file name).
 * The bytes are not copied: do not change them while the store is open.
 *
 * ```ts
 * const response = await fetch('/model/model.safetensors');
 * const weights = openSafetensorsBytes(await response.arrayBuffer(), response.url);
 * ```
 *
 * @throws WeightsError `'bad-input'` when `bytes` is not an ArrayBuffer or Uint8Array; `'truncated'`, `'bad-header-length'`, `'bad-header'`, `'unknown-dtype'`,
 *   `'size-mismatch'`, `'bad-offsets'` for a malformed file, before anything is decoded.
 */
export function openSafetensorsBytes(bytes: ArrayBuffer | Uint8Array, file = 'model.safetensors'): WeightStore {
  let all: Uint8Array;
  if (ArrayBuffer.isView(bytes)) all = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  else if (bytes instanceof ArrayBuffer) all = new Uint8Array(bytes);
  else throw new WeightsError('bad-input', `${file}: expected the file's bytes as an ArrayBuffer or Uint8Array; got ${typeof bytes}`, { file });
  const headerLength = readHeaderLength(all.subarray(0, 8), all.byteLength, file);
  const entries = parseSafetensorsHeader(all.subarray(8, 8 + headerLength), all.byteLength, file);
  return new SafetensorsBytesStore(file, all.subarray(8 + headerLength), entries);
}
