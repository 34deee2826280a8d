/**
 * ONNX external data written as a graph is built: each initializer's bytes go to one side file as
 * soon as the tensor exists, and the graph keeps only an `external_data` reference, so a model
 * larger than memory is written one tensor at a time.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { onnx as O } from 'onnx-proto';
import { onnx } from './onnx-namespace.js';
import { externalDataEntries, tensorBytes } from './tensor-proto.js';

/** Options of {@link ExternalDataWriter}. */
export interface ExternalDataWriterOptions {
  /** Start of each tensor in the file (default 4096, so onnxruntime can map it). */
  readonly alignment?: number;
  /** Tensors smaller than this stay inline in the graph (default 1024 bytes). */
  readonly minExternalBytes?: number;
}

/** Appends tensors' bytes to one external-data file. */
export class ExternalDataWriter {
  private fd: number | undefined;
  private end = 0;
  private readonly alignment: number;
  private readonly minBytes: number;

  /**
   * @param path The side file, created (or truncated) now.
   * @param location Its name relative to the model file, as the references give it.
   */
  constructor(
    readonly path: string,
    readonly location: string,
    options: ExternalDataWriterOptions = {},
  ) {
    this.alignment = options.alignment ?? 4096;
    this.minBytes = options.minExternalBytes ?? 1024;
    this.fd = openSync(path, 'w');
  }

  /** Bytes in the file so far (the end of the last tensor). */
  get bytes(): number {
    return this.end;
  }

  /**
   * Writes `t`'s bytes now and returns a tensor that refers to them (same name, type and dims);
   * a tensor under `minExternalBytes` is returned as it is. `t`'s data may be dropped afterwards.
   */
  add(t: O.ITensorProto): O.ITensorProto {
    const bytes = tensorBytes(t);
    if (bytes.length < this.minBytes) return t;
    const fd = this.fd;
    if (fd === undefined) throw new Error(`${this.path} is closed`);
    const offset = Math.ceil(this.end / this.alignment) * this.alignment;
    writeAll(fd, bytes, offset);
    this.end = offset + bytes.length;
    return onnx.TensorProto.create({
      name: t.name,
      dataType: t.dataType,
      dims: t.dims,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: externalDataEntries({ location: this.location, offset, length: bytes.length }),
    });
  }

  /** Closes the file (idempotent). */
  close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes all of `bytes` at `position` (pieces of at most 1 GiB: one `write` call takes no more). */
export function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) {
    const chunk = bytes.subarray(done, Math.min(bytes.length, done + 2 ** 30));
    done += writeSync(fd, chunk, 0, chunk.length, position + done);
  }
}
