/**
 * The layout of a `.safetensors` file before any data is written: the header bytes (u64 LE length,
 * then the JSON, space-padded so the data section starts 8-byte aligned, as the HF writer does)
 * and each tensor's byte range in the data section, in the given order. Shared by the in-memory
 * encoder and the streaming file writer. Browser-safe.
 */

import { WeightsError } from '../errors.js';
import { TENSOR_DTYPES, dtypeByteSize, isTensorDtype, type TensorDtype } from './dtype.js';

/** A tensor as a header describes it: name, element type and row-major shape. */
export interface TensorSpec {
  readonly name: string;
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
}

/** Where one tensor's bytes go: [begin, end) of the data section. */
export interface PlannedTensor extends TensorSpec {
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsLayout {
  /** The 8-byte length followed by the padded JSON header. */
  readonly header: Uint8Array;
  readonly tensors: readonly PlannedTensor[];
  /** Bytes of the data section (the sum of the tensors' sizes). */
  readonly dataBytes: number;
}

/** Bytes `spec` takes in the data section. */
export function tensorByteSize(spec: TensorSpec): number {
  return spec.shape.reduce((a, b) => a * b, 1) * dtypeByteSize(spec.dtype);
}

/**
 * Validates `specs` (names unique and not `__metadata__`, known dtypes, non-negative integer dims)
 * and lays them out contiguously in the given order.
 * @throws WeightsError `'bad-tensor'`, `'unknown-dtype'`.
 */
export function planSafetensors(specs: readonly TensorSpec[], metadata?: Readonly<Record<string, string>>): SafetensorsLayout {
  // No prototype: a tensor named `__proto__` must become a key, not replace the object's prototype.
  const header: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  if (metadata) header['__metadata__'] = { ...metadata };
  const tensors: PlannedTensor[] = [];
  let offset = 0;
  for (const t of specs) {
    const fail = (code: string, message: string): never => {
      throw new WeightsError(code, `tensor '${t.name}': ${message}`, { tensor: t.name });
    };
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) fail('bad-tensor', 'name is reserved or duplicated');
    if (!isTensorDtype(t.dtype)) fail('unknown-dtype', `dtype '${String(t.dtype)}'; supported: ${TENSOR_DTYPES.join(', ')}`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail('bad-tensor', `shape [${t.shape.join(', ')}] has a non-integer or negative dim`);
    const size = tensorByteSize(t);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + size] };
    tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, begin: offset, end: offset + size });
    offset += size;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const bytes = new Uint8Array(8 + padded).fill(0x20, 8); // trailing spaces are valid JSON whitespace
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  return { header: bytes, tensors, dataBytes: offset };
}
