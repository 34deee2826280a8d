/**
 * Where a checkpoint writer's bytes go: a file opened for writing, fed in order. The default writes
 * with `fs.writeSync`; tests pass their own to inject a full disk or a failing device.
 */

import { closeSync, openSync, writeSync } from 'node:fs';
import { WeightsError } from '../errors.js';

export interface FileSink {
  /** Appends `bytes` (all of them, or throws). */
  write(bytes: Uint8Array): void;
  close(): void;
}

/** Opens `path` (created or truncated) as a {@link FileSink}. */
export type OpenFileSink = (path: string) => FileSink;

/** The file system's sink: `fs.openSync(path, 'w')`, then positional-free `writeSync` loops. */
export const openFileSink: OpenFileSink = (path) => {
  const fd = openSync(path, 'w');
  return {
    write(bytes) {
      let done = 0;
      while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    },
    close: () => closeSync(fd),
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
