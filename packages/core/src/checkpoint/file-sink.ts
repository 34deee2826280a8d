/**
 * Where a checkpoint writer's bytes go: a file opened for writing, fed in order. Writes are
 * asynchronous so the writer can produce the next piece while the last one goes to disk. The
 * default writes through a `FileHandle`; tests pass their own to inject a full disk.
 */

import { open } from 'node:fs/promises';
import { WeightsError } from '../errors.js';

export interface FileSink {
  /** Appends `bytes` (all of them, or rejects); `bytes` must stay unchanged until the promise settles. */
  write(bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Opens `path` (created or truncated) as a {@link FileSink}. */
export type OpenFileSink = (path: string) => Promise<FileSink>;

/** The file system's sink: a `FileHandle` opened `'w'`, written in order. */
export const openFileSink: OpenFileSink = async (path) => {
  const handle = await open(path, 'w');
  return {
    async write(bytes) {
      let done = 0;
      while (done < bytes.byteLength) done += (await handle.write(bytes, done, bytes.byteLength - done)).bytesWritten;
    },
    close: () => handle.close(),
  };
};

/**
 * A failed write or rename as a one-line `WeightsError`: `'disk-full'` (ENOSPC, EDQUOT),
 * `'not-writable'` (no permission, a read-only file system, a path through a file or a missing
 * folder), else `'io-error'`.
 */
export function writeError(path: string, cause: unknown, doing = 'cannot write'): WeightsError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const kind =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? 'disk-full'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENOENT'
        ? 'not-writable'
        : 'io-error';
  const reason = kind === 'disk-full' ? 'the disk is full' : kind === 'not-writable' ? 'not writable' : 'I/O error';
  const detail = (cause as Error | undefined)?.message?.split('\n')[0] ?? String(cause);
  return new WeightsError(kind, `${path}: ${doing}: ${reason} (${detail})`, { file: path, cause });
}
