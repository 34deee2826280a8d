/**
 * TensorProto building and reading: float32 / float16 / uint8 / int32 / int64 tensors from typed arrays and back,
 * and the `external_data` entries of tensors whose bytes live in a side file.
 *
 * Data is stored as `raw_data`: little-endian bytes in row-major order (ONNX's rule for raw data),
 * which is also the memory order of the typed arrays on every platform Node supports.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import type { onnx as O } from 'onnx-proto';
import { WeightsError } from '@ropeswitch/core';
import { DataType, int64ToNumber, onnx } from './onnx-namespace.js';

/** The typed arrays a tensor can be read into. */
export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;

/** A view of `data`'s bytes (no copy). */
function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

function checkDims(name: string, dims: readonly number[], length: number): void {
  const n = dims.reduce((a, b) => a * b, 1);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0) || n !== length) {
    throw new WeightsError('shape-mismatch', `tensor ${name}: dims [${dims.join(', ')}] do not hold ${length} elements`, { tensor: name });
  }
}

/** A float32 tensor whose raw data views `data` (no copy: keep `data` unchanged until encoded). */
export function floatTensor(name: string, data: Float32Array, dims: readonly number[]): O.ITensorProto {
  checkDims(name, dims, data.length);
  return onnx.TensorProto.create({ name, dataType: DataType.FLOAT, dims: [...dims], rawData: bytesOf(data) });
}

/** An int64 tensor (values must be safe integers). */
export function int64Tensor(name: string, values: ArrayLike<number> | BigInt64Array, dims: readonly number[]): O.ITensorProto {
  checkDims(name, dims, values.length);
  const data = values instanceof BigInt64Array ? values : BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return onnx.TensorProto.create({ name, dataType: DataType.INT64, dims: [...dims], rawData: bytesOf(data) });
}

/** A uint8 tensor whose raw data views `data` (packed quantized blocks, for instance). */
export function uint8Tensor(name: string, data: Uint8Array, dims: readonly number[]): O.ITensorProto {
  checkDims(name, dims, data.length);
  return onnx.TensorProto.create({ name, dataType: DataType.UINT8, dims: [...dims], rawData: data });
}

/** A float16 tensor from its IEEE half bits (no copy). */
export function float16Tensor(name: string, bits: Uint16Array, dims: readonly number[]): O.ITensorProto {
  checkDims(name, dims, bits.length);
  return onnx.TensorProto.create({ name, dataType: DataType.FLOAT16, dims: [...dims], rawData: bytesOf(bits) });
}

/** An int32 tensor. */
export function int32Tensor(name: string, values: ArrayLike<number> | Int32Array, dims: readonly number[]): O.ITensorProto {
  checkDims(name, dims, values.length);
  const data = values instanceof Int32Array ? values : Int32Array.from(values);
  return onnx.TensorProto.create({ name, dataType: DataType.INT32, dims: [...dims], rawData: bytesOf(data) });
}

/** Bytes per element of the element types this module reads. */
export function elementSize(dataType: number): number {
  switch (dataType) {
    case DataType.FLOAT:
    case DataType.INT32:
      return 4;
    case DataType.INT64:
      return 8;
    case DataType.FLOAT16:
      return 2;
    case DataType.BOOL:
    case DataType.UINT8:
      return 1;
    default:
      throw new WeightsError('unsupported-dtype', `ONNX tensor element type ${dataType} is not supported (float, float16, uint8, int32, int64, bool are)`);
  }
}

/** The tensor's dims as numbers. */
export function tensorDims(t: O.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => int64ToNumber(d));
}

/** Where a tensor's bytes live in a side file (`external_data` entries: `location`, `offset`, `length`). */
export interface ExternalDataLocation {
  /** File name relative to the model file's folder. */
  readonly location: string;
  readonly offset: number;
  readonly length: number;
}

/** The `external_data` entries of a tensor whose bytes are at `where`. */
export function externalDataEntries(where: ExternalDataLocation): O.IStringStringEntryProto[] {
  return [
    { key: 'location', value: where.location },
    { key: 'offset', value: String(where.offset) },
    { key: 'length', value: String(where.length) },
  ];
}

/** Whether a tensor's bytes are in a side file (`data_location` EXTERNAL). */
export function isExternal(t: O.ITensorProto): boolean {
  return t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
}

/** Reads a tensor's `external_data` entries; the location must stay inside the model's folder. */
export function readExternalDataLocation(t: O.ITensorProto): ExternalDataLocation {
  const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = entries.get('location') ?? '';
  const norm = normalize(location);
  if (location === '' || isAbsolute(location) || norm.startsWith('..')) {
    throw new WeightsError('bad-external-data', `tensor ${t.name}: external data location '${location}' is not a file name relative to the model`, { tensor: t.name ?? undefined });
  }
  const offset = Number(entries.get('offset') ?? '0');
  const length = entries.has('length') ? Number(entries.get('length')) : -1;
  return { location: norm, offset, length };
}

/**
 * The raw bytes of a tensor: its `raw_data`, its typed fields re-encoded, or (for external data)
 * the bytes read from `modelDir`. The length is checked against the dims.
 */
export function tensorBytes(t: O.ITensorProto, modelDir?: string): Uint8Array {
  const dtype = t.dataType ?? 0;
  const count = tensorDims(t).reduce((a, b) => a * b, 1);
  const size = count * elementSize(dtype);
  let bytes: Uint8Array;
  if (isExternal(t)) {
    if (modelDir === undefined) throw new WeightsError('external-data', `tensor ${t.name} has external data: pass the model's folder to read it`, { tensor: t.name ?? undefined });
    const where = readExternalDataLocation(t);
    const file = readFileSync(join(modelDir, where.location));
    const length = where.length < 0 ? size : where.length;
    if (where.offset < 0 || where.offset + length > file.length) {
      throw new WeightsError('bad-external-data', `tensor ${t.name}: bytes [${where.offset}, ${where.offset + length}) are outside ${where.location} (${file.length} bytes)`, { tensor: t.name ?? undefined });
    }
    bytes = file.subarray(where.offset, where.offset + length);
  } else if (t.rawData && t.rawData.length > 0) {
    bytes = t.rawData;
  } else if (dtype === DataType.FLOAT) {
    bytes = bytesOf(Float32Array.from(t.floatData ?? []));
  } else if (dtype === DataType.INT32 || dtype === DataType.BOOL) {
    const v = Int32Array.from(t.int32Data ?? []);
    bytes = dtype === DataType.BOOL ? Uint8Array.from(v) : bytesOf(v);
  } else {
    bytes = bytesOf(BigInt64Array.from((t.int64Data ?? []).map((x) => BigInt(int64ToNumber(x)))));
  }
  if (bytes.length !== size) {
    throw new WeightsError('shape-mismatch', `tensor ${t.name}: ${bytes.length} bytes of data for ${count} elements of type ${dtype}`, { tensor: t.name ?? undefined });
  }
  return bytes;
}

/** A tensor's values as a fresh typed array of its element type (float32, float16 bits, int32, int64, or bytes for uint8 / bool). */
export function tensorToArray(t: O.ITensorProto, modelDir?: string): TensorData {
  const bytes = tensorBytes(t, modelDir);
  // Copy into an aligned buffer: raw_data may sit at any byte offset of the decoded message.
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  switch (t.dataType) {
    case DataType.FLOAT:
      return new Float32Array(copy.buffer);
    case DataType.FLOAT16:
      return new Uint16Array(copy.buffer);
    case DataType.INT32:
      return new Int32Array(copy.buffer);
    case DataType.INT64:
      return new BigInt64Array(copy.buffer);
    default:
      return copy;
  }
}
