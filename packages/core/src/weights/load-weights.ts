/**
 * Opens an HF checkpoint directory's weights, single-file or sharded, as one `WeightStore`.
 */

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { WeightsError } from '../errors.js';
import { openSafetensors } from './safetensors-reader.js';
import type { ReadListener } from './safetensors-store.js';
import { type TensorInfo, type WeightStore, storedBytes } from './weight-store.js';

/** How far the reads of a checkpoint's tensors are (each tensor counted as often as it is read). */
export interface LoadProgress {
  /** Bytes read from the weights files so far. */
  readonly bytesRead: number;
  /** Bytes of every tensor of the checkpoint, as stored (BF16 counts 2 a value). */
  readonly totalBytes: number;
  /** The tensor being read. */
  readonly tensor: string;
}

/** Options of {@link loadWeights}. */
export interface LoadWeightsOptions {
  /** Called after each piece read (at most 8 MiB): what a loading progress bar shows. */
  readonly onProgress?: (progress: LoadProgress) => void;
}

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

/** Index files are small JSON maps; refuse absurd ones rather than read them whole. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Parses an HF `model.safetensors.index.json`: tensor name → shard file name (plain names only). */
function parseIndex(text: string, file: string): Map<string, string> {
  const fail = (message: string, tensor?: string): never => {
    throw new WeightsError('bad-index', `${file}: ${message}`, { file, tensor });
  };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new WeightsError('bad-index', `${file}: not valid JSON (${String(cause)})`, { file, cause });
  }
  const weightMap = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['weight_map'] : undefined;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) fail('weight_map must be an object of tensor name → shard file');
  const map = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(weightMap as Record<string, unknown>)) {
    if (typeof shard !== 'string') fail(`weight_map['${tensor}'] is not a string`, tensor);
    // Shards must live in the checkpoint directory: no path separators, no '.'/'..', no NUL.
    const s = shard as string;
    if (s === '' || s === '.' || s === '..' || /[/\\\0]/.test(s)) fail(`weight_map['${tensor}'] = '${s}' is not a plain file name`, tensor);
    map.set(tensor, s);
  }
  return map;
}

/** A store over several shards, routing each tensor to the shard the index names. */
class ShardedStore implements WeightStore {
  constructor(
    readonly names: readonly string[],
    private readonly route: Map<string, WeightStore>,
    private readonly shards: readonly WeightStore[],
  ) {}

  #shard(name: string): WeightStore {
    const s = this.route.get(name);
    if (!s) throw new WeightsError('missing-tensor', `checkpoint index has no tensor named '${name}'`, { tensor: name });
    return s;
  }

  has(name: string): boolean {
    return this.route.has(name);
  }

  info(name: string): TensorInfo {
    return this.#shard(name).info(name);
  }

  get(name: string, expectedShape?: readonly number[]): Float32Array {
    return this.#shard(name).get(name, expectedShape);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

async function openSharded(dir: string, indexPath: string, onRead: ReadListener | undefined): Promise<WeightStore> {
  let text: string;
  try {
    if ((await stat(indexPath)).size > MAX_INDEX_BYTES) throw new Error(`larger than ${MAX_INDEX_BYTES} bytes`);
    text = await readFile(indexPath, 'utf8');
  } catch (cause) {
    throw new WeightsError('bad-index', `${indexPath}: cannot read (${String(cause)})`, { file: indexPath, cause });
  }
  const weightMap = parseIndex(text, indexPath);
  const shardNames = [...new Set(weightMap.values())].sort();
  const opened = new Map<string, WeightStore>();
  try {
    for (const shard of shardNames) opened.set(shard, await openSafetensors(join(dir, shard), { onRead }));
    const names: string[] = [];
    const route = new Map<string, WeightStore>();
    for (const [tensor, shard] of weightMap) {
      const store = opened.get(shard)!;
      if (!store.has(tensor)) {
        throw new WeightsError('missing-tensor', `${indexPath}: tensor '${tensor}' is listed in shard '${shard}' but that file does not contain it`, {
          file: join(dir, shard),
          tensor,
        });
      }
      route.set(tensor, store);
    }
    // File order: shards by name, tensors in each shard's data order; only what the index lists.
    for (const shard of shardNames) for (const n of opened.get(shard)!.names) if (weightMap.get(n) === shard) names.push(n);
    return new ShardedStore(Object.freeze(names), route, [...opened.values()]);
  } catch (err) {
    await Promise.all([...opened.values()].map((s) => s.close()));
    throw err;
  }
}

/**
 * Opens the weights of an HF checkpoint directory: `model.safetensors`, or else the shards listed
 * by `model.safetensors.index.json`. Only headers are read here; each `get` reads one tensor,
 * converting half-precision ones to float32 piece by piece, and reports it to `onProgress`.
 * @throws WeightsError `'no-weights'` if neither exists, or any reader/index error.
 */
export async function loadWeights(dir: string, options: LoadWeightsOptions = {}): Promise<WeightStore> {
  const { onProgress } = options;
  let bytesRead = 0;
  let totalBytes = 0;
  const onRead: ReadListener | undefined = onProgress
    ? (tensor, bytes) => {
        bytesRead += bytes;
        onProgress({ bytesRead, totalBytes, tensor });
      }
    : undefined;
  const store = await openWeights(dir, onRead);
  for (const name of store.names) totalBytes += storedBytes(store.info(name));
  return store;
}

async function openWeights(dir: string, onRead: ReadListener | undefined): Promise<WeightStore> {
  const single = join(dir, SINGLE_FILE_NAME);
  if (await isFile(single)) return openSafetensors(single, { onRead });
  const index = join(dir, INDEX_FILE_NAME);
  if (await isFile(index)) return openSharded(dir, index, onRead);
  throw new WeightsError('no-weights', `${dir}: neither ${SINGLE_FILE_NAME} nor ${INDEX_FILE_NAME} found`, { file: dir });
}
