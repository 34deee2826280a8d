/**
 * Typed errors. Every error the library raises on bad input or a failed step is one of these,
 * with a message that names the file, field or step and what was expected.
 */

/** Base class: `instanceof RopeswitchError` catches every error the library raises on purpose. */
export class RopeswitchError extends Error {
  /** A stable, machine-readable reason (e.g. `'missing-field'`, `'truncated'`). */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A `config.json` that cannot be used: malformed JSON, a missing or wrong-typed field, a bad factor list. */
export class ConfigError extends RopeswitchError {
  /** The JSON path of the offending field (e.g. `rope_scaling.long_factor`), when one is to blame. */
  readonly field: string | undefined;

  constructor(code: string, message: string, options?: { field?: string; cause?: unknown }) {
    super(code, message, options);
    this.field = options?.field;
  }
}

/** A weights file that cannot be trusted: bad header, out-of-file offsets, unknown dtype, missing tensor, wrong shape. */
export class WeightsError extends RopeswitchError {
  /** The file the problem was found in, when there is one. */
  readonly file: string | undefined;
  /** The tensor concerned, when one is to blame. */
  readonly tensor: string | undefined;

  constructor(code: string, message: string, options?: { file?: string; tensor?: string; cause?: unknown }) {
    super(code, message, options);
    this.file = options?.file;
    this.tensor = options?.tensor;
  }
}

/** Misuse of a KV cache: wrong layout for the model, disposed, cropped past its length. */
export class CacheError extends RopeswitchError {}

/** A forward call that cannot run or failed: ids outside the vocabulary, positions past the model's limit, NaN logits. */
export class BackendError extends RopeswitchError {}

/** A session or generation misused: bad chunk size, planned length, sampling options, empty input. */
export class SessionError extends RopeswitchError {}

/** A cache policy that failed or was misused (e.g. `next` called twice). */
export class PolicyError extends RopeswitchError {}

/**
 * Whether `error` is an abort: the signal's own reason, or any `AbortError`. Aborts are reported
 * as they are, never wrapped in a library error.
 */
export function isAbortError(error: unknown, signal?: AbortSignal): boolean {
  return (signal?.aborted === true && error === signal.reason) || (error instanceof Error && error.name === 'AbortError');
}
