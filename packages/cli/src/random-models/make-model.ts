import { readFileSync } from 'node:fs';
import {
  type CheckpointTensor,
  type CheckpointWriteProgress,
  type ModelConfig,
  type OpenFileSink,
  type TensorDtype,
  type WrittenCheckpoint,
  ConfigError,
  parseModelConfig,
  writeCheckpoint,
} from '@ropeswitch/core';
import { assetPath } from '../assets.js';
import { type DecoderTensor, decoderTensors } from './decoder-tensors.js';
import { type QuantileTable, fillFromTable, normalQuantile, quantileTable, uniformQuantile } from './quantile-tables.js';

/** The models `make-model --like` copies the shape of: their published `config.json`s are in `assets/configs/`. */
export const MODEL_LIKES = ['phi-3-mini-128k', 'phi-3.5-mini', 'phi-4-mini'] as const;
export type ModelLike = (typeof MODEL_LIKES)[number];

/** Checkpoint dtypes `make-model` writes (HF ships the Phi-3 family in bf16). */
export type CheckpointDtype = 'bf16' | 'f16' | 'f32';

const DTYPES: Record<CheckpointDtype, { tensor: TensorDtype; torch: string }> = {
  bf16: { tensor: 'BF16', torch: 'bfloat16' },
  f16: { tensor: 'F16', torch: 'float16' },
  f32: { tensor: 'F32', torch: 'float32' },
};

export interface MakeModelOptions {
  readonly like: ModelLike;
  /** `num_hidden_layers` (default: the published model's, 32). */
  readonly layers?: number;
  /** Default `bf16`. */
  readonly dtype?: CheckpointDtype;
  readonly seed?: number;
  readonly onProgress?: (progress: CheckpointWriteProgress) => void;
  /**
   * Config fields set over the published ones besides `layers` (tests use a narrower model of the
   * same family to run 8k tokens quickly). Not offered on the command line: `--like` means the shape.
   */
  readonly overrides?: Readonly<Record<string, unknown>>;
  /** Where the files go (default the file system; tests inject a full disk). */
  readonly openSink?: OpenFileSink;
}

/** What {@link makeModel} wrote. */
export interface MadeModel {
  readonly config: ModelConfig;
  readonly checkpoint: WrittenCheckpoint;
  readonly parameters: number;
}

/** The published `config.json` of `like`, as an object (a fresh copy). */
export function publishedConfig(like: ModelLike): Record<string, unknown> {
  if (!(MODEL_LIKES as readonly string[]).includes(like)) {
    throw new ConfigError('unknown-model', `no published config for '${String(like)}'; known: ${MODEL_LIKES.join(', ')}`);
  }
  return JSON.parse(readFileSync(assetPath(`configs/${like}.json`), 'utf8')) as Record<string, unknown>;
}

/** The config `make-model` writes: the published one with `num_hidden_layers`, `torch_dtype` and any overrides set. */
export function likeConfig(options: Pick<MakeModelOptions, 'like' | 'layers' | 'dtype' | 'overrides'>): Record<string, unknown> {
  const json = publishedConfig(options.like);
  if (options.layers !== undefined) json['num_hidden_layers'] = options.layers;
  json['torch_dtype'] = DTYPES[options.dtype ?? 'bf16'].torch;
  return { ...json, ...options.overrides };
}

/**
 * Writes a checkpoint of `options.like`'s architecture with seeded random weights into `out`, the
 * way HF ships one (safetensors shards, at least two, and `model.safetensors.index.json`),
 * streamed tensor by tensor: memory stays at two pieces of 8 MiB whatever the size, and the
 * next piece is drawn while the last one is written.
 *
 * Weights are scaled so activations stay O(1) at any depth and length: projections
 * ~ N(0, 1/fan_in) (unit-variance q, k, v and MLP activations after each RMSNorm, attention
 * scores of unit spread), embedding and `lm_head` ~ N(0, 4/hidden) (logits of spread ~2 whether
 * tied or not), RMSNorm weights ~ U(0.8, 1.2).
 */
export async function makeModel(out: string, options: MakeModelOptions): Promise<MadeModel> {
  const configJson = likeConfig(options);
  const config = parseModelConfig(configJson, `${options.like} config`);
  const dtype = DTYPES[options.dtype ?? 'bf16'].tensor;
  const seed = options.seed ?? 0;
  const tables = new Map<string, QuantileTable>();
  const tableFor = (t: DecoderTensor): QuantileTable => {
    const [key, quantile] = distribution(t, config.hiddenSize);
    let table = tables.get(key);
    if (!table) tables.set(key, (table = quantileTable(quantile, dtype)));
    return table;
  };
  const specs = decoderTensors(config);
  const tensors: CheckpointTensor[] = specs.map((t, index) => ({
    name: t.name,
    dtype,
    shape: t.shape,
    pieces: () => randomPieces(t.shape.reduce((a, b) => a * b, 1), tableFor(t), tensorSeed(seed, index), dtype),
  }));
  const checkpoint = await writeCheckpoint(out, tensors, {
    config: configJson,
    minShards: 2,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.openSink ? { openSink: options.openSink } : {}),
  });
  const parameters = specs.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  return { config, checkpoint, parameters };
}

/** A tensor's distribution (and a key naming it, so equal ones share a table). */
function distribution(t: DecoderTensor, hidden: number): [string, (p: number) => number] {
  switch (t.role) {
    case 'norm':
      return ['norm', uniformQuantile(0.8, 1.2)];
    case 'bias':
      return ['bias', normalQuantile(0.1)];
    case 'embedding':
    case 'lm-head':
      return ['vocab', normalQuantile(2 / Math.sqrt(hidden))];
    case 'matrix':
      return [`fan-in ${t.fanIn}`, normalQuantile(1 / Math.sqrt(t.fanIn))];
  }
}

/** Values per piece handed to the writer (8 MiB of BF16). Even, so the stream does not depend on the cut. */
const PIECE = 4 * 1024 * 1024;

/** The tensor's bytes in pieces, drawn into two buffers in turn (the writer holds one while the next is drawn). */
function* randomPieces(count: number, table: QuantileTable, seed: number, dtype: TensorDtype): Generator<Uint8Array> {
  const size = Math.min(count, PIECE);
  const buffers = dtype === 'F32' ? [new Uint32Array(size), new Uint32Array(size)] : [new Uint16Array(size), new Uint16Array(size)];
  let state = seed;
  for (let done = 0, k = 0; done < count; done += PIECE, k ^= 1) {
    const n = Math.min(PIECE, count - done);
    const piece = buffers[k]!;
    state = fillFromTable(piece, n, table, state);
    yield new Uint8Array(piece.buffer, 0, n * piece.BYTES_PER_ELEMENT);
  }
}

/** Each tensor its own stream, from the seed and its index (splitmix32's finaliser). */
function tensorSeed(seed: number, index: number): number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
  z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
  return (z ^ (z >>> 15)) >>> 0;
}
