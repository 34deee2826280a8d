/**
 * ModelProto building, encoding and writing. `writeModel` keeps a model under protobuf's 2 GiB
 * message limit by moving large initializers to one side file (ONNX external data), named relative
 * to the model so the folder can move.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { onnx as O } from 'onnx-proto';
import { WeightsError } from '@ropeswitch/core';
import { onnx } from './onnx-namespace.js';
import { ExternalDataWriter, writeAll } from './external-data-writer.js';
import { tensorBytes } from './tensor-proto.js';

/** An operator set import: `''` is ai.onnx, `'com.microsoft'` onnxruntime's contrib ops. */
export interface OpsetImport {
  readonly domain: string;
  readonly version: number;
}

/** ai.onnx 23 (RotaryEmbedding, Attention, RMSNormalization) and com.microsoft 1. */
export const DEFAULT_OPSETS: readonly OpsetImport[] = [
  { domain: '', version: 23 },
  { domain: 'com.microsoft', version: 1 },
];

/** IR version 11: the one ai.onnx opset 23 requires. */
export const DEFAULT_IR_VERSION = 11;

/** What a graph holds. */
export interface GraphParts {
  readonly name: string;
  readonly nodes: readonly O.INodeProto[];
  readonly inputs: readonly O.IValueInfoProto[];
  readonly outputs: readonly O.IValueInfoProto[];
  readonly initializers: readonly O.ITensorProto[];
}

export interface ModelOptions {
  readonly opsets?: readonly OpsetImport[];
  readonly irVersion?: number;
  readonly producerName?: string;
  readonly producerVersion?: string;
  /** `metadata_props` entries (e.g. the exporter's inputs, for a cache key). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A model of one graph. */
export function makeModel(graph: GraphParts, options: ModelOptions = {}): O.ModelProto {
  return onnx.ModelProto.create({
    irVersion: options.irVersion ?? DEFAULT_IR_VERSION,
    opsetImport: (options.opsets ?? DEFAULT_OPSETS).map((o) => ({ domain: o.domain, version: o.version })),
    producerName: options.producerName ?? 'ropeswitch',
    producerVersion: options.producerVersion ?? '',
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: graph.name,
      node: [...graph.nodes],
      input: [...graph.inputs],
      output: [...graph.outputs],
      initializer: [...graph.initializers],
    },
  });
}

/** Protobuf bytes of a model (it must be under 2 GiB: see {@link writeModel}). */
export function encodeModel(model: O.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Decodes model bytes (external data stays where the tensors' entries say). */
export function decodeModel(bytes: Uint8Array): O.ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new WeightsError('bad-onnx', `not an ONNX model (${String(cause)})`, { cause });
  }
}

/** Reads and decodes a `.onnx` file. */
export function readModel(path: string): O.ModelProto {
  try {
    return decodeModel(readFileSync(path));
  } catch (cause) {
    if (cause instanceof WeightsError) throw new WeightsError(cause.code, `${path}: ${cause.message}`, { file: path, cause });
    throw new WeightsError('unreadable', `cannot read ${path} (${String(cause)})`, { file: path, cause });
  }
}

export interface WriteModelOptions {
  /**
   * Initializer bytes above which large tensors go to external data (default 1 GiB; values over
   * 2 GiB are lowered to it: protobuf cannot encode a larger model).
   */
  readonly inlineLimitBytes?: number;
  /** Tensors at least this large move when external data is used (default 1024 bytes). */
  readonly minExternalBytes?: number;
  /** The side file's name, relative to the model (default `<model file>.data`). */
  readonly externalDataFile?: string;
  /** Start of each tensor in the side file (default 4096, so onnxruntime can map it). */
  readonly alignment?: number;
}

/** What {@link writeModel} wrote. */
export interface WrittenModel {
  readonly modelPath: string;
  /** The side file, when external data was used. */
  readonly externalDataPath: string | undefined;
}

const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * Writes `model` to `path`. When its initializers exceed `inlineLimitBytes` (always past 2 GiB),
 * every initializer of at least `minExternalBytes` is written to one side file next to the model and
 * replaced by `external_data` entries naming it relative to the model. `model` is not modified.
 */
export function writeModel(path: string, model: O.IModelProto, options: WriteModelOptions = {}): WrittenModel {
  const graph = model.graph ?? {};
  const initializers = graph.initializer ?? [];
  const limit = Math.min(options.inlineLimitBytes ?? 2 ** 30, PROTOBUF_LIMIT - 64 * 2 ** 20);
  const minBytes = options.minExternalBytes ?? 1024;
  const sizes = initializers.map((t) => tensorBytes(t).length);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total <= limit) {
    writeFileAll(path, encodeModel(model));
    return { modelPath: path, externalDataPath: undefined };
  }
  const location = options.externalDataFile ?? `${basename(path)}.data`;
  const writer = new ExternalDataWriter(join(dirname(path), location), location, { alignment: options.alignment ?? 4096, minExternalBytes: minBytes });
  let moved: O.ITensorProto[];
  try {
    moved = initializers.map((t) => writer.add(t));
  } finally {
    writer.close();
  }
  writeFileAll(path, encodeModel({ ...model, graph: { ...graph, initializer: moved } }));
  return { modelPath: path, externalDataPath: writer.path };
}

function writeFileAll(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'w');
  try {
    writeAll(fd, bytes, 0);
  } finally {
    closeSync(fd);
  }
}
