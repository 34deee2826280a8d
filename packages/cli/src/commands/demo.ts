import { Session, greedyDecode, greedyNoCache } from '@ropeswitch/core';
import { intOption, parseOptions } from '../args.js';
import { BUILTIN_MODEL_DIR, openBackend } from '../backends.js';
import type { CommandIO } from '../io.js';
import { SeededRandom } from '../tiny-model/seeded-random.js';
import { UsageError } from '../usage-error.js';

export const demoUsage = 'ropeswitch demo [--n N] [--seed S] [--json]';

// Token ids of the built-in copy-task model (assets/copy-longrope/tokens.json).
const BOS = 0;
const SEP = 1;
const EOS = 2;
const FIRST_CONTENT = 4;
const CONTENT_IDS = 48;

/** One decoding of the copy: what it produced and how it compares with the target. */
export interface DemoRun {
  readonly name: string;
  readonly description: string;
  readonly tokens: number[];
  readonly correct: number;
  /** Index of the first wrong token, or -1. */
  readonly firstError: number;
}

export interface DemoResult {
  readonly threshold: number;
  readonly promptLength: number;
  /** The generated-token index whose forward is the first longer than the threshold. */
  readonly crossingStep: number;
  readonly target: number[];
  readonly runs: DemoRun[];
}

/**
 * The copy task on the built-in LongRoPE model: `[BOS] x1..xn [SEP]` → `x1..xn [EOS]`, with a
 * prompt below the threshold and a copy that crosses it. Decoded once with a stale cache (what a
 * custom loop on HF gets) and once with the no-cache oracle.
 */
export async function runDemo(n: number, seed: number): Promise<DemoResult> {
  const rng = new SeededRandom(seed);
  const content = Array.from({ length: n }, () => FIRST_CONTENT + rng.int(CONTENT_IDS));
  const prompt = [BOS, ...content, SEP];
  const target = [...content, EOS];
  const backend = await openBackend('reference', BUILTIN_MODEL_DIR);
  try {
    const session = new Session(backend);
    const threshold = session.schedule.threshold ?? Infinity;
    // Step i's forward covers prompt + i tokens: the copy crosses when prompt ≤ L < prompt + n.
    if (prompt.length > threshold || prompt.length + n <= threshold) {
      const lo = Math.floor((threshold - 2) / 2) + 1;
      throw new UsageError(`a copy of ${n} symbols (prompt ${prompt.length} tokens) does not cross the threshold ${threshold}; use ${lo} ≤ n ≤ ${threshold - 2}`);
    }
    const stale = await greedyDecode(session, prompt, { maxNewTokens: target.length });
    session.dispose();
    const oracle = await greedyNoCache(backend, prompt, { maxNewTokens: target.length });
    const score = (name: string, description: string, tokens: number[]): DemoRun => {
      const firstError = tokens.findIndex((t, i) => t !== target[i]);
      return { name, description, tokens, correct: tokens.filter((t, i) => t === target[i]).length, firstError };
    };
    return {
      threshold,
      promptLength: prompt.length,
      crossingStep: threshold - prompt.length + 1,
      target,
      runs: [
        score('oracle', 'no cache: a full forward per step', oracle.tokens),
        score('stale', 'cache kept through the crossing', stale.tokens),
      ],
    };
  } finally {
    await backend.dispose();
  }
}

export async function demoCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('demo', argv, { n: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' } });
  const n = intOption('n', o.n, 50, 1, 250);
  const seed = intOption('seed', o.seed, 1, 0, 2 ** 32 - 1);
  const result = await runDemo(n, seed);
  if (o.json) {
    io.stdout(`${JSON.stringify(result)}\n`);
    return;
  }
  io.stdout(formatDemo(result, n));
}

/** The readable report: target, each run aligned under it, wrong tokens in brackets (symbols shown as 0–47). */
export function formatDemo(r: DemoResult, n: number): string {
  const show = (t: number) => (t === EOS ? 'E' : t >= FIRST_CONTENT ? String(t - FIRST_CONTENT) : `?${t}`);
  const width = 4;
  const cell = (s: string) => s.padStart(width);
  const lines = [
    `ropeswitch demo: copy task on the built-in LongRoPE model (threshold L = ${r.threshold})`,
    `prompt: [BOS] ${n} random symbols [SEP] = ${r.promptLength} tokens; the copy has ${r.target.length} tokens (E = EOS)`,
    `generated token ${r.crossingStep} is the first predicted by a forward longer than L: from there the model needs long-factor keys`,
    '',
    `${'target'.padEnd(8)}${r.target.map((t) => cell(show(t))).join('')}`,
  ];
  const marker = `${' '.repeat(8 + r.crossingStep * width)}${'^'.padStart(width)} crossing`;
  for (const run of r.runs) {
    const row = run.tokens.map((t, i) => cell(t === r.target[i] ? show(t) : `[${show(t)}]`)).join('');
    lines.push(`${run.name.padEnd(8)}${row}`);
  }
  lines.push(marker, '');
  for (const run of r.runs) {
    const where = run.firstError < 0 ? 'no errors' : `first wrong token at ${run.firstError}`;
    lines.push(`${run.name.padEnd(8)}${run.correct}/${r.target.length} correct, ${where}: ${run.description}`);
  }
  const stale = r.runs.find((x) => x.name === 'stale');
  if (stale && stale.firstError >= 0) {
    const after = stale.tokens.slice(r.crossingStep).filter((t, i) => t === r.target[r.crossingStep + i]).length;
    lines.push(
      '',
      `The stale cache breaks at token ${stale.firstError} (crossing at ${r.crossingStep}): after it ${after}/${r.target.length - r.crossingStep} tokens are right,`,
      'because every key cached before the crossing still carries short-factor rotations.',
    );
  }
  return `${lines.join('\n')}\n`;
}
