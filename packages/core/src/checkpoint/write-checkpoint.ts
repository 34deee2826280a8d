/**
 * Writes an HF checkpoint folder the way `save_pretrained` ships one: `config.json`, safetensors
 * shards `model-0000i-of-0000N.safetensors` and `model.safetensors.index.json` (a single
 * `model.safetensors` when one shard holds everything), streamed tensor by tensor so that memory
 * stays at one piece of one tensor, whatever the checkpoint's size.
 *
 * Nothing half-written is ever loadable: shards and the config are written under hidden temporary
 * names, renamed into place only once every byte is on disk, and the index (what a load looks for
 * first) is written last; an old model in the folder is removed just before. On failure the
 * temporary files are removed and a one-line `WeightsError` says why.
 */

import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeightsError } from '../errors.js';
import { type TensorSpec, planSafetensors, tensorByteSize } from '../weights/safetensors-layout.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME } from '../weights/load-weights.js';
import { type FileSink, type OpenFileSink, openFileSink, writeError } from './file-sink.js';

/** A tensor to stream into a checkpoint. */
export interface CheckpointTensor extends TensorSpec {
  /**
   * The tensor's bytes, encoded in `dtype`, row-major, in order, in pieces of any size (the writer
   * checks that they add up to the tensor's size). A piece is written while the next one is made,
   * so a producer may reuse a piece's memory only from the piece after next on (two buffers in turn).
   */
  pieces(): Iterable<Uint8Array>;
}

/** How far a write is, reported after each piece. */
export interface CheckpointWriteProgress {
  /** Tensor bytes written so far, over every shard. */
  readonly bytesWritten: number;
  /** Tensor bytes of the whole checkpoint. */
  readonly totalBytes: number;
  /** The shard being written (its final name) and the tensor in it. */
  readonly file: string;
  readonly tensor: string;
}

export interface WriteCheckpointOptions {
  /** The `config.json` to write beside the weights. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Largest shard, in tensor bytes (default 5 GB, `save_pretrained`'s `max_shard_size="5GB"`). */
  readonly maxShardBytes?: number;
  /** Split into at least this many shards where the tensors allow it (default 1). */
  readonly minShards?: number;
  /** Each shard's `__metadata__` (default `{ format: 'pt' }`, as torch checkpoints carry). */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly onProgress?: (progress: CheckpointWriteProgress) => void;
  /** Opens each file written (default: the file system); tests pass one that fails. */
  readonly openSink?: OpenFileSink;
}

/** What {@link writeCheckpoint} wrote. */
export interface WrittenCheckpoint {
  readonly dir: string;
  /** Shard file names, in order (one `model.safetensors` when unsharded). */
  readonly shards: readonly string[];
  /** Tensor bytes (the index's `metadata.total_size`). */
  readonly totalBytes: number;
  /** Bytes on disk of the weights files, headers included. */
  readonly fileBytes: number;
}

/** `save_pretrained`'s default shard size. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

const SHARD_PATTERN = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Groups tensors into shards in their order, HF style: a shard takes tensors until the next would
 * pass `maxShardBytes`. A checkpoint that would come in fewer than `minShards` files gets the
 * limit lowered to `total / minShards` (never below the largest tensor), so a small one is still split.
 */
export function planShards(tensors: readonly TensorSpec[], maxShardBytes = DEFAULT_MAX_SHARD_BYTES, minShards = 1): TensorSpec[][] {
  const sizes = tensors.map(tensorByteSize);
  const total = sizes.reduce((a, b) => a + b, 0);
  const wanted = total > maxShardBytes * (Math.max(1, minShards) - 1) ? maxShardBytes : Math.ceil(total / Math.max(1, minShards));
  const limit = Math.max(wanted, ...sizes, 1);
  const shards: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let bytes = 0;
  tensors.forEach((t, i) => {
    if (current.length > 0 && bytes + sizes[i]! > limit) {
      shards.push(current);
      current = [];
      bytes = 0;
    }
    current.push(t);
    bytes += sizes[i]!;
  });
  if (current.length > 0) shards.push(current);
  return shards;
}

/** HF's shard file name: `model-00001-of-00002.safetensors`. */
export function shardFileName(index: number, count: number): string {
  return `model-${String(index + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.safetensors`;
}

/**
 * Streams `tensors` into the checkpoint folder `dir` (created if missing), with `options.config` as
 * its `config.json`.
 * @throws WeightsError `'not-writable'` (a folder that cannot be created or written), `'disk-full'`
 *   (checked before writing from the free space, and on any ENOSPC), `'io-error'`, `'size-mismatch'`
 *   (a tensor that emits more or fewer bytes than its shape holds), `'bad-tensor'` / `'unknown-dtype'`.
 */
export async function writeCheckpoint(dir: string, tensors: readonly CheckpointTensor[], options: WriteCheckpointOptions): Promise<WrittenCheckpoint> {
  const openSink = options.openSink ?? openFileSink;
  const metadata = options.metadata ?? { format: 'pt' };
  const groups = planShards(tensors, options.maxShardBytes, options.minShards);
  const sharded = groups.length > 1;
  const names = sharded ? groups.map((_, i) => shardFileName(i, groups.length)) : [SINGLE_FILE_NAME];
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const layouts = groups.map((g) => planSafetensors(g, metadata));
  const totalBytes = layouts.reduce((n, l) => n + l.dataBytes, 0);
  const fileBytes = layouts.reduce((n, l) => n + l.header.byteLength + l.dataBytes, 0);

  try {
    mkdirSync(dir, { recursive: true });
  } catch (cause) {
    throw writeError(dir, cause, 'cannot create the folder');
  }
  checkFreeSpace(dir, fileBytes);

  const tag = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const temp = (name: string) => join(dir, `.${name}.partial-${tag}`);
  const written: string[] = [];
  try {
    let bytesWritten = 0;
    for (let s = 0; s < layouts.length; s++) {
      const layout = layouts[s]!;
      const path = temp(names[s]!);
      written.push(path);
      let sink: FileSink;
      try {
        sink = await openSink(path);
      } catch (cause) {
        throw writeError(join(dir, names[s]!), cause, 'cannot create the shard');
      }
      // One write in flight: the next piece is made while the last one goes to disk.
      let inFlight: Promise<void> = sink.write(layout.header);
      let complete = false;
      try {
        for (const planned of layout.tensors) {
          const size = planned.end - planned.begin;
          let emitted = 0;
          for (const piece of byName.get(planned.name)!.pieces()) {
            emitted += piece.byteLength;
            if (emitted > size) throw new WeightsError('size-mismatch', `tensor '${planned.name}' emitted more than its ${size} bytes`, { tensor: planned.name });
            await inFlight;
            inFlight = sink.write(piece);
            bytesWritten += piece.byteLength;
            options.onProgress?.({ bytesWritten, totalBytes, file: names[s]!, tensor: planned.name });
          }
          if (emitted !== size) throw new WeightsError('size-mismatch', `tensor '${planned.name}' emitted ${emitted} of its ${size} bytes`, { tensor: planned.name });
        }
        await inFlight;
        complete = true;
      } catch (cause) {
        await inFlight.catch(() => undefined);
        // System errors (ENOSPC, EIO, ...) become typed; anything else is the producer's own.
        if (typeof (cause as NodeJS.ErrnoException | undefined)?.code !== 'string' || cause instanceof WeightsError) throw cause;
        throw writeError(join(dir, names[s]!), cause);
      } finally {
        // A close that fails after a failed write must not hide the write's error.
        await sink.close().catch((cause: unknown) => {
          if (complete) throw writeError(join(dir, names[s]!), cause, 'cannot close');
        });
      }
    }
    const configPath = temp('config.json');
    written.push(configPath);
    writeText(configPath, `${JSON.stringify(options.config, null, 2)}\n`, join(dir, 'config.json'));
    let indexPath: string | undefined;
    if (sharded) {
      indexPath = temp(INDEX_FILE_NAME);
      written.push(indexPath);
      const weightMap: Record<string, string> = {};
      groups.forEach((g, s) => g.forEach((t) => (weightMap[t.name] = names[s]!)));
      const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]!]));
      writeText(indexPath, `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: sorted }, null, 2)}\n`, join(dir, INDEX_FILE_NAME));
    }

    // Commit: the old model goes first, so no mix of old and new files is ever loadable.
    removeOldWeights(dir);
    names.forEach((name, s) => moveInto(written[s]!, join(dir, name)));
    moveInto(configPath, join(dir, 'config.json'));
    if (indexPath) moveInto(indexPath, join(dir, INDEX_FILE_NAME));
    return { dir, shards: names, totalBytes, fileBytes };
  } catch (error) {
    for (const path of written) rmSync(path, { force: true });
    throw error;
  }
}

function checkFreeSpace(dir: string, bytes: number): void {
  let free: number;
  try {
    const s = statfsSync(dir);
    free = s.bavail * s.bsize;
  } catch {
    return; // No figure here (an exotic file system): the writes themselves will tell.
  }
  if (free < bytes) {
    const gb = (n: number) => `${(n / 1e9).toFixed(2)} GB`;
    throw new WeightsError('disk-full', `${dir}: the checkpoint needs ${gb(bytes)} but only ${gb(free)} are free`, { file: dir });
  }
}

function writeText(path: string, text: string, finalPath: string): void {
  try {
    writeFileSync(path, text);
  } catch (cause) {
    throw writeError(finalPath, cause);
  }
}

function moveInto(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (cause) {
    throw writeError(to, cause, 'cannot move into place');
  }
}

/** Removes a model's weights files (the index first, then single file and shards) so that none of them outlives the new ones. */
function removeOldWeights(dir: string): void {
  const old = [INDEX_FILE_NAME, SINGLE_FILE_NAME, ...readdirSync(dir).filter((f) => SHARD_PATTERN.test(f))];
  for (const f of old) {
    try {
      rmSync(join(dir, f), { force: true });
    } catch (cause) {
      throw writeError(join(dir, f), cause, 'cannot replace the old model');
    }
  }
}
