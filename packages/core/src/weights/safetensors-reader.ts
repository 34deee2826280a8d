/**
 * Reads one `.safetensors` file lazily: only the 8-byte length and the JSON header are read on
 * open; each `get` reads exactly one tensor's bytes. Every malformed input becomes a `WeightsError`.
 * The header format and its checks live in `safetensors-header.ts` (browser-safe).
 */

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { WeightsError } from '../errors.js';
import { parseSafetensorsHeader, readHeaderLength } from './safetensors-header.js';
import { SafetensorsStore } from './safetensors-store.js';
import type { WeightStore } from './weight-store.js';

export { MAX_HEADER_BYTES, parseSafetensorsHeader, type SafetensorsEntry } from './safetensors-header.js';

/** Reads exactly `length` bytes at `position`, looping because one read returns at most ~2 GB. */
function readExactly(fd: number, length: number, position: number, file: string, tensor?: string): Uint8Array {
  let buf: Uint8Array;
  try {
    buf = new Uint8Array(length); // own ArrayBuffer at offset 0: aligned for zero-copy F32 views
  } catch (cause) {
    throw new WeightsError('too-large', `${file}: cannot allocate ${length} bytes${tensor ? ` for tensor '${tensor}'` : ''}`, { file, tensor, cause });
  }
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, buf, done, Math.min(length - done, 1 << 30), position + done);
    } catch (cause) {
      throw new WeightsError('io-error', `${file}: read failed (${String(cause)})`, { file, tensor, cause });
    }
    if (n === 0) throw new WeightsError('truncated', `${file}: file ended while reading ${tensor ? `tensor '${tensor}'` : 'the header'}`, { file, tensor });
    done += n;
  }
  return buf;
}

/** Opens one safetensors file, validating its header; tensors are read on demand by `get`. */
export async function openSafetensors(path: string): Promise<WeightStore> {
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
    const headerLength = readHeaderLength(fileSize < 8 ? new Uint8Array(0) : readExactly(fd, 8, 0, path), fileSize, path);
    const entries = parseSafetensorsHeader(readExactly(fd, headerLength, 8, path), fileSize, path);
    const dataStart = 8 + headerLength;
    return new SafetensorsStore(path, entries, {
      read: (begin, end, tensor) => readExactly(fd, end - begin, dataStart + begin, path, tensor),
      close: () => closeSync(fd),
    });
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}
