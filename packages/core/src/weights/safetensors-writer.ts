/**
 * Writes `.safetensors` files (used for tests, fixtures and converted checkpoints). Tensors are
 * laid out contiguously in the given order; the header is space-padded so the data section
 * starts 8-byte aligned, as the HF writer does.
 */

import { writeFile } from 'node:fs/promises';
import { WeightsError } from '../errors.js';
import { TENSOR_DTYPES, dtypeByteSize, encodeTensor, isTensorDtype, type TensorDtype } from './dtype.js';

/** One tensor to write: float32 values, encoded to `dtype` on write. Layout is row-major `shape`. */
export interface TensorToWrite {
  readonly name: string;
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Serialises tensors (and optional string metadata) to safetensors bytes in memory. */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  // No prototype: a tensor named `__proto__` must become a key, not replace the object's prototype.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata) header['__metadata__'] = metadata;
  const payloads: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const fail = (code: string, message: string): never => {
      throw new WeightsError(code, `tensor '${t.name}': ${message}`, { tensor: t.name });
    };
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) fail('bad-tensor', 'name is reserved or duplicated');
    if (!isTensorDtype(t.dtype)) fail('unknown-dtype', `dtype '${String(t.dtype)}'; supported: ${TENSOR_DTYPES.join(', ')}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail('bad-tensor', `shape [${t.shape.join(', ')}] has a non-integer or negative dim`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) fail('size-mismatch', `shape [${t.shape.join(', ')}] holds ${count} values but data has ${t.data.length}`);
    const bytes = encodeTensor(t.data, t.dtype);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    payloads.push(bytes);
    offset += bytes.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20); // trailing spaces are valid JSON whitespace
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const p of payloads) {
    out.set(p, pos);
    pos += p.byteLength;
  }
  return out;
}

/** Writes tensors to `path` as safetensors (see {@link encodeSafetensors}). */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  try {
    await writeFile(path, bytes);
  } catch (cause) {
    throw new WeightsError('io-error', `${path}: cannot write (${String(cause)})`, { file: path, cause });
  }
}
