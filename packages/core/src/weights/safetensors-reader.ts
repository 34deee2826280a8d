/**
 * Reads one `.safetensors` file lazily: only the 8-byte length and the JSON header are read on
 * open; each `get` reads exactly one tensor's bytes. Every malformed input becomes a `WeightsError`.
 * The header format and its checks live in `safetensors-header.ts` (browser-safe).
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { WeightsError } from '../errors.js';
import { parseSafetensorsHeader, readHeaderLength } from './safetensors-header.js';
import { type ReadListener, SafetensorsStore } from './safetensors-store.js';
import type { WeightStore } from './weight-store.js';

export { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsEntry } from './safetensors-header.js';

/** Fills `target` from `position` on, looping because one read returns at most ~2 GB. */
function readExactlyInto(fd: number, target: Uint8Array, position: number, file: string, tensor?: string): Uint8Array {
  let done = 0;
  while (done < target.byteLength) {
    let n: number;
    try {
      n = readSync(fd, target, done, Math.min(target.byteLength - done, 1 << 30), position + done);
    } catch (cause) {
      throw new WeightsError('io-error', `${file}: read failed (${String(cause)})`, { file, tensor, cause });
    }
    if (n === 0) throw new WeightsError('truncated', `${file}: file ended while reading ${tensor ? `tensor '${tensor}'` : 'the header'}`, { file, tensor });
    done += n;
  }
  return target;
}

/** Options of {@link openSafetensors}. */
export interface OpenSafetensorsOptions {
  /** Told of every piece read (tensor name, bytes): what a loading progress bar counts. */
  readonly onRead?: ReadListener;
}

/** Opens one safetensors file, validating its header; tensors are read on demand by `get`. */
export async function openSafetensors(path: string, options: OpenSafetensorsOptions = {}): Promise<WeightStore> {
  let fd: number;
  try {
    // A plain fd (not a FileHandle) so `get` can stay synchronous with readSync.
    fd = openSync(path, 'r');
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    throw new WeightsError(missing ? 'missing-file' : 'io-error', `${path}: cannot open (${String(cause)})`, { file: path, cause });
  }
  try {
    let fileSize: number;
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new Error('not a regular file');
      fileSize = st.size;
    } catch (cause) {
      throw new WeightsError('io-error', `${path}: cannot stat (${String(cause)})`, { file: path, cause });
    }
    const headerLength = readHeaderLength(fileSize < 8 ? new Uint8Array(0) : readExactlyInto(fd, new Uint8Array(8), 0, path), fileSize, path);
    const entries = parseSafetensorsHeader(readExactlyInto(fd, new Uint8Array(headerLength), 8, path), fileSize, path);
    const dataStart = 8 + headerLength;
    return new SafetensorsStore(
      path,
      entries,
      {
        readInto: (begin, target, tensor) => void readExactlyInto(fd, target, dataStart + begin, path, tensor),
        close: () => closeSync(fd),
      },
      options.onRead,
    );
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
