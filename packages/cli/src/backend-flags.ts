import { intOption } from './args.js';

/**
 * Flags every command that opens a backend takes beside `--backend` / `--backends`. Each reaches
 * the backends that have the matching option and is ignored by the others (the report or the
 * backend's `deviceDescription` says what ran).
 */
export const BACKEND_FLAGS = {
  threads: { type: 'string' },
} as const;

/** What {@link BACKEND_FLAGS} parse to. */
export interface BackendSettings {
  /** Compute threads (onnxruntime: `intraOpNumThreads`); absent: the backend's default. */
  readonly threads?: number;
}

/** Parses the backend flags of a command line (`parseOptions` output). */
export function backendSettings(o: Readonly<Record<string, string | boolean | undefined>>): BackendSettings {
  return o.threads === undefined ? {} : { threads: intOption('threads', o.threads, 0, 1, 1024) };
}
