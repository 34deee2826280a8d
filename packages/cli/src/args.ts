import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

type OptionSpec = Record<string, { type: 'string' | 'boolean' }>;

/**
 * A value as a usage error shows it: quoted, on one line (control characters escaped, so a value
 * holding a newline cannot break the one-line error contract), and at most 60 characters.
 */
export function quoted(value: unknown): string {
  const s = String(value);
  const short = s.length > 60 ? `${s.slice(0, 60)}…` : s;
  return `'${short.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}

/** `node:util` parseArgs in strict mode, with its errors turned into usage errors. */
export function parseOptions(command: string, argv: string[], options: OptionSpec): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message.split('\n')[0]}`);
  }
}

/** A required string option. */
export function required(command: string, name: string, value: string | boolean | undefined): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${command}: --${name} is required`);
  return value;
}

/** An integer option within [min, max]; `fallback` when absent. */
export function intOption(name: string, value: string | boolean | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${quoted(value)}`);
  }
  return n;
}

/** `--ids 1,2,3` → [1, 2, 3]: non-negative integers separated by commas. */
export function idList(name: string, value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => !/^\d+$/.test(s))) {
    throw new UsageError(`--${name} must be comma-separated non-negative integers (e.g. 1,2,3), got ${quoted(value)}`);
  }
  const ids = parts.map(Number);
  if (ids.some((n) => !Number.isSafeInteger(n))) throw new UsageError(`--${name} has an id too large: ${quoted(value)}`);
  return ids;
}

/** One of a fixed set of values. */
export function choice<T extends string>(name: string, value: string | boolean | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got ${quoted(value)}`);
  }
  return value as T;
}

/** A number option within [min, max]; `undefined` when absent. */
export function numberOption(name: string, value: string | boolean | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a number in [${min}, ${max}], got ${quoted(value)}`);
  }
  return n;
}
