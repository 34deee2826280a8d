/**
 * Writes `.safetensors` files from float32 arrays in memory (tests, fixtures, tiny models). Tensors
 * are laid out contiguously in the given order (`safetensors-layout.ts`). Checkpoints too large to
 * hold in memory are streamed by `writeCheckpoint` instead.
 */

import { writeFile } from 'node:fs/promises';
import { WeightsError } from '../errors.js';
import { encodeTensor, type TensorDtype } from './dtype.js';
import { planSafetensors } from './safetensors-layout.js';

/** One tensor to write: float32 values, encoded to `dtype` on write. Layout is row-major `shape`. */
export interface TensorToWrite {
  readonly name: string;
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Serialises tensors (and optional string metadata) to safetensors bytes in memory. */
export function encodeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const layout = planSafetensors(tensors, metadata);
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new WeightsError('size-mismatch', `tensor '${t.name}': shape [${t.shape.join(', ')}] holds ${count} values but data has ${t.data.length}`, {
        tensor: t.name,
      });
    }
  }
  const out = new Uint8Array(layout.header.byteLength + layout.dataBytes);
  out.set(layout.header, 0);
  tensors.forEach((t, i) => out.set(encodeTensor(t.data, t.dtype), layout.header.byteLength + layout.tensors[i]!.begin));
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
