/**
 * The safetensors header, parsed and validated without touching a file system: shared by the
 * file reader (`safetensors-reader.ts`, Node) and the in-memory one (`safetensors-bytes.ts`,
 * browsers). Every malformed input becomes a `WeightsError`.
 *
 * Layout: u64 LE header length N | N bytes of UTF-8 JSON | data section; `data_offsets` are
 * relative to the data section, which starts at byte 8 + N.
 */

import { WeightsError } from '../errors.js';
import { TENSOR_DTYPES, dtypeByteSize, isTensorDtype, type TensorDtype } from './dtype.js';
import type { TensorInfo } from './weight-store.js';

/** Headers beyond this are refused before any allocation: real headers are kilobytes to a few MB. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** One validated header entry; `begin`/`end` are relative to the data section. */
export interface SafetensorsEntry extends TensorInfo {
  readonly begin: number;
  readonly end: number;
}

const formatShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Product of `dims` times `scale`, or `undefined` if it exceeds `Number.MAX_SAFE_INTEGER`. */
function safeProduct(dims: readonly number[], scale: number): number | undefined {
  let n = scale;
  for (const d of dims) {
    if (d === 0) return 0;
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return n;
}

/**
 * Reads the u64 LE header length from the first 8 bytes of `file` (of `fileSize` bytes) and checks
 * that it fits both the file and {@link MAX_HEADER_BYTES}.
 * @throws WeightsError `'truncated'` (file under 8 bytes), `'bad-header-length'`.
 */
export function readHeaderLength(lengthBytes: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || lengthBytes.byteLength < 8) {
    throw new WeightsError('truncated', `${file}: ${fileSize} bytes is too short for the 8-byte header length`, { file });
  }
  // u64 as BigInt: no silent wrap.
  const n = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES) || n > BigInt(fileSize - 8)) {
    throw new WeightsError(
      'bad-header-length',
      `${file}: header length ${n} exceeds ${n > BigInt(fileSize - 8) ? `the ${fileSize - 8} bytes after it` : `the ${MAX_HEADER_BYTES}-byte limit`}`,
      { file },
    );
  }
  return Number(n);
}

/**
 * Validates the header JSON bytes of `file` (of `fileSize` bytes) and returns its tensors in data
 * order. Exported so fuzz tests can drive it without files.
 */
export function parseSafetensorsHeader(header: Uint8Array, fileSize: number, file: string): Map<string, SafetensorsEntry> {
  const fail = (code: string, message: string, tensor?: string): never => {
    throw new WeightsError(code, `${file}: ${message}`, { file, tensor });
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(header));
  } catch (cause) {
    throw new WeightsError('bad-header', `${file}: header is not valid UTF-8 JSON (${String(cause)})`, { file, cause });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('bad-header', 'header is not a JSON object');

  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      // The reference implementation requires a string → string map; anything else is corrupt.
      const ok = typeof raw === 'object' && raw !== null && !Array.isArray(raw) && Object.values(raw).every((v) => typeof v === 'string');
      if (!ok) fail('bad-header', '__metadata__ must be an object of string values');
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('bad-header', `tensor '${name}' entry is not an object`, name);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string') fail('bad-header', `tensor '${name}' has no dtype string`, name);
    if (!isTensorDtype(dtype as string)) {
      fail('unknown-dtype', `tensor '${name}' has dtype '${String(dtype)}'; supported: ${TENSOR_DTYPES.join(', ')}`, name);
    }
    if (!Array.isArray(shape) || !shape.every(isIndex)) fail('bad-header', `tensor '${name}' shape must be an array of non-negative integers`, name);
    const [begin, end] = Array.isArray(offsets) && offsets.length === 2 ? (offsets as unknown[]) : [];
    if (!isIndex(begin) || !isIndex(end) || begin > end) {
      fail('bad-header', `tensor '${name}' data_offsets must be [begin, end] with 0 <= begin <= end`, name);
    }
    const dims = Object.freeze([...(shape as number[])]);
    const span = (end as number) - (begin as number);
    const expected = safeProduct(dims, dtypeByteSize(dtype as TensorDtype));
    if (expected !== span) {
      fail('size-mismatch', `tensor '${name}' (${String(dtype)} ${formatShape(dims)}) needs ${expected ?? 'more than 2^53'} bytes but data_offsets span ${span}`, name);
    }
    entries.push(Object.freeze({ name, dtype: dtype as TensorDtype, shape: dims, begin: begin as number, end: end as number }));
  }

  // The spec requires the tensors to tile the data section exactly, with no gaps or overlaps.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const dataSize = fileSize - 8 - header.byteLength;
  if (dataSize < 0) fail('bad-header-length', `header of ${header.byteLength} bytes does not fit in a ${fileSize}-byte file`);
  let next = 0;
  for (const e of entries) {
    if (e.begin !== next) {
      fail('bad-offsets', `tensor '${e.name}' begins at ${e.begin} but the previous tensor ends at ${next} (tensors must be contiguous)`, e.name);
    }
    if (e.end > dataSize) fail('truncated', `tensor '${e.name}' ends at ${e.end}, past the ${dataSize}-byte data section`, e.name);
    next = e.end;
  }
  if (next !== dataSize) fail('bad-offsets', `${dataSize - next} trailing bytes after the last tensor`);
  return new Map(entries.map((e) => [e.name, e]));
}

/**
 * The entry named `name` of `file`, checked against `expectedShape` when given: the lookup every
 * store's `info`/`get` starts with.
 * @throws WeightsError `'missing-tensor'`, `'shape-mismatch'`.
 */
export function findEntry(
  entries: ReadonlyMap<string, SafetensorsEntry>,
  name: string,
  file: string,
  expectedShape?: readonly number[],
): SafetensorsEntry {
  const e = entries.get(name);
  if (!e) throw new WeightsError('missing-tensor', `${file}: no tensor named '${name}'`, { file, tensor: name });
  if (expectedShape && (expectedShape.length !== e.shape.length || expectedShape.some((d, i) => d !== e.shape[i]))) {
    throw new WeightsError('shape-mismatch', `${file}: tensor '${name}' has shape ${formatShape(e.shape)}, expected ${formatShape(expectedShape)}`, {
      file,
      tensor: name,
    });
  }
  return e;
}
