import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The in-repo copies of `../shared/fixtures/` (kept byte-identical; see fixtures-copy.test.ts). */
export const fixturesDir = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const hfDir = `${fixturesDir}hf/`;
export const trainedDir = `${fixturesDir}trained/copy-longrope/`;

/** HF fixture case folders (`seed1-gqa`, …). */
export function hfCases(): string[] {
  return readdirSync(hfDir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

/** A loosely typed view of `expected.json` (see test/fixtures/hf/README.md). */
export interface HfExpected {
  case: string;
  prompt: number[];
  full_forward_short: { input_ids?: number[]; input_ids_from?: string[]; logits: number[] };
  full_forward_long: { input_ids?: number[]; input_ids_from?: string[]; length?: number; positions: number[]; logits: number[][] };
  greedy_hf: { max_new_tokens: number; tokens: number[]; logits: number[][]; crossing_step?: number; threshold_step?: number };
  greedy_stale?: { tokens: number[]; logits: number[][] };
  stale_teacher_forced?: { tokens: number[]; logits: number[][] };
  oracle_teacher_forced?: { tokens: number[]; logits: number[][] };
  greedy_oracle?: { tokens: number[]; logits: number[][] };
  inv_freq_short?: number[];
  inv_freq_long?: number[];
  inv_freq_short_f32_bits?: number[];
  inv_freq_long_f32_bits?: number[];
  inv_freq_default?: number[];
  inv_freq_dynamic?: Record<string, number[]>;
  attention_factor: number;
}

export function readExpected(name: string): HfExpected {
  return JSON.parse(readFileSync(`${hfDir}${name}/expected.json`, 'utf8')) as HfExpected;
}

/** The input ids of a `full_forward_*` entry: given directly, or the named fields concatenated and cut. */
export function inputIds(e: HfExpected, entry: { input_ids?: number[]; input_ids_from?: string[]; length?: number }): number[] {
  if (entry.input_ids) return entry.input_ids;
  const fields: Record<string, number[]> = { prompt: e.prompt, 'greedy_hf.tokens': e.greedy_hf.tokens };
  const ids = (entry.input_ids_from ?? []).flatMap((f) => {
    const v = fields[f];
    if (!v) throw new Error(`unknown input_ids_from field ${f}`);
    return v;
  });
  return entry.length === undefined ? ids : ids.slice(0, entry.length);
}

/** Largest |a − b| over two equal-length vectors (Infinity when lengths differ). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return Number.isNaN(m) ? Infinity : m;
}
