import { SeededRandom, generate, greedyNoCache, wrapBackend } from '@ropeswitch/core';
import { POLICY_NAMES, type PolicyName, policyByName } from '@ropeswitch/policies';
import { choice, intOption, parseOptions } from '../args.js';
import type { Backend } from '@ropeswitch/core';
import { BACKEND_NAMES, type BackendName, TRAINED_MODEL_DIR, openBackend } from '../backends.js';
import { BACKEND_FLAGS, BACKEND_FLAGS_USAGE, type BackendSettings, backendSettings } from '../backend-flags.js';
import type { CommandIO } from '../io.js';
import { UsageError } from '../usage-error.js';

export const demoUsage = `ropeswitch demo [--n N] [--seed S] [--backend reference|onnxruntime|webgpu] ${BACKEND_FLAGS_USAGE} [--json]`;

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

/** What each run of the demo is, in a few words. */
const DESCRIPTIONS: Record<'oracle' | PolicyName, string> = {
  oracle: 'no cache: a full forward per step (the ground truth)',
  stale: 'cache kept through the crossing (what a custom loop on HF gets)',
  'warn-only': 'as stale, plus one typed event at the crossing',
  're-prefill': 'all tokens re-run under long factors at the crossing',
  rerotate: 'cached keys rotated to long factors in place (exact at layer 0 only)',
  'pre-estimate': 'long factors from the first token (the planned length crosses)',
  'shadow-prefill': 'long-factor copy built ahead, swapped in at the crossing',
};

/**
 * The copy task on the built-in LongRoPE model: `[BOS] x1..xn [SEP]` → `x1..xn [EOS]`, with a
 * prompt below the threshold and a copy that crosses it. Decoded greedily by the no-cache oracle
 * and through each cache policy.
 */
export async function runDemo(n: number, seed: number, backendName: BackendName = 'reference', settings: BackendSettings = {}): Promise<DemoResult> {
  const rng = new SeededRandom(seed);
  const content = Array.from({ length: n }, () => FIRST_CONTENT + rng.int(CONTENT_IDS));
  const prompt = [BOS, ...content, SEP];
  const target = [...content, EOS];
  const backend = await openBackend(backendName, TRAINED_MODEL_DIR, { settings });
  try {
    const threshold = thresholdOf(backend);
    // Step i's forward covers prompt + i tokens: the copy crosses when prompt ≤ L < prompt + n.
    if (prompt.length > threshold || prompt.length + n <= threshold) {
      const lo = Math.floor((threshold - 2) / 2) + 1;
      throw new UsageError(`a copy of ${n} symbols (prompt ${prompt.length} tokens) does not cross the threshold ${threshold}; use ${lo} ≤ n ≤ ${threshold - 2}`);
    }
    const score = (name: string, tokens: number[]): DemoRun => {
      const firstError = tokens.findIndex((t, i) => t !== target[i]);
      const description = DESCRIPTIONS[name as keyof typeof DESCRIPTIONS];
      return { name, description, tokens, correct: tokens.filter((t, i) => t === target[i]).length, firstError };
    };
    const runs = [score('oracle', (await greedyNoCache(backend, prompt, { maxNewTokens: target.length })).tokens)];
    for (const name of POLICY_NAMES) {
      const result = await generate(wrapBackend(backend, policyByName(name)), prompt, { maxNewTokens: target.length, collectLogits: false });
      runs.push(score(name, result.tokens));
    }
    return { threshold, promptLength: prompt.length, crossingStep: threshold - prompt.length + 1, target, runs };
  } finally {
    await backend.dispose();
  }
}

function thresholdOf(backend: Backend): number {
  const { scaling } = backend.config.rope;
  return scaling.type === 'longrope' ? scaling.originalMaxPositionEmbeddings : Infinity;
}

export async function demoCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('demo', argv, { n: { type: 'string' }, seed: { type: 'string' }, backend: { type: 'string' }, json: { type: 'boolean' }, ...BACKEND_FLAGS });
  const n = intOption('n', o.n, 50, 1, 250);
  const seed = intOption('seed', o.seed, 1, 0, 2 ** 32 - 1);
  const result = await runDemo(n, seed, choice('backend', o.backend, BACKEND_NAMES, 'reference'), backendSettings(o));
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
  const label = Math.max(8, ...r.runs.map((run) => run.name.length + 2));
  const cell = (s: string) => s.padStart(width);
  const lines = [
    `ropeswitch demo: copy task on the built-in LongRoPE model (threshold L = ${r.threshold})`,
    `prompt: [BOS] ${n} random symbols [SEP] = ${r.promptLength} tokens; the copy has ${r.target.length} tokens (E = EOS)`,
    `generated token ${r.crossingStep} is the first predicted by a forward longer than L: from there the model needs long-factor keys`,
    '',
    `${'target'.padEnd(label)}${r.target.map((t) => cell(show(t))).join('')}`,
  ];
  for (const run of r.runs) {
    const row = run.tokens.map((t, i) => cell(t === r.target[i] ? show(t) : `[${show(t)}]`)).join('');
    lines.push(`${run.name.padEnd(label)}${row}`);
  }
  lines.push(`${' '.repeat(label + r.crossingStep * width)}${'^'.padStart(width)} crossing`, '');
  const afterTotal = r.target.length - r.crossingStep;
  for (const run of r.runs) {
    const after = run.tokens.slice(r.crossingStep).filter((t, i) => t === r.target[r.crossingStep + i]).length;
    const where = run.firstError < 0 ? 'no errors' : `first wrong at ${run.firstError}`;
    lines.push(`${run.name.padEnd(label)}${`${run.correct}/${r.target.length}`.padStart(5)} correct, ${`${after}/${afterTotal}`.padStart(5)} after the crossing, ${where.padEnd(17)} ${run.description}`);
  }
  lines.push(
    '',
    'A stale cache keeps the short-factor keys of every token before the crossing; rerotation fixes the',
    'rotation of layer 0 only (deeper keys were computed under short-factor attention); re-prefill and',
    'shadow-prefill recompute the cache under long factors, shadow-prefill ahead of the crossing.',
  );
  return `${lines.join('\n')}\n`;
}
