/**
 * A `WeightStore` over a whole `.safetensors` file already in memory (a `fetch` response's
 * `arrayBuffer()`, a `File` from an `<input>`): no file system, so it runs in browsers and workers.
 * The header is validated on open, as the file reader does; each `get` decodes one tensor into an
 * array of its own, so callers may keep or change it without touching the file's bytes.
 */

import { WeightsError } from '../errors.js';
import { parseSafetensorsHeader, readHeaderLength } from './safetensors-header.js';
import { SafetensorsStore } from './safetensors-store.js';
import type { WeightStore } from './weight-store.js';

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
  const data = all.subarray(8 + headerLength);
  return new SafetensorsStore(file, entries, {
    readInto: (begin, target) => target.set(data.subarray(begin, begin + target.byteLength)),
    // Nothing to release: once the store drops this object, the bytes go when the caller drops them too.
    close: () => undefined,
  });
}
