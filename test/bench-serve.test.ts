import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport, ServeRun } from '../packages/cli/src/bench/bench-report.js';
import { planServe, servePlanProblem, serveRowSlots } from '../packages/cli/src/bench/serve-plan.js';
import { type CliRun, runCli } from './support/run-cli.js';

// `ropeswitch bench --scenarios serve` in-process on the L = 256 built-in model (--quick), a few
// sequences of a few tokens: the report's serve section (identity to the solo runs, a finite
// throughput ratio, prefix hits on the shared system prompt, the scheduler's counters), its tables
// and targets, the plan's shape, and usage errors. No timing is asserted.

const tempDirs: string[] = [];
afterAll(async () => {
  for (const dir of tempDirs) await rm(dir, { recursive: true, force: true });
});

const SEQUENCES = 3;
const NEW_TOKENS = 6;

let out: string;
let run: CliRun;
let report: BenchReport;
let serve: ServeRun;
beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'ropeswitch-bench-serve-'));
  tempDirs.push(out);
  run = await runCli([
    'bench', '--quick', '--scenarios', 'serve', '--policies', 'shadow-prefill', '--no-task',
    '--serve-sequences', String(SEQUENCES), '--serve-new-tokens', String(NEW_TOKENS), '--out', out,
  ]);
  report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as BenchReport;
  serve = report.serve![0]!;
}, 60_000);

describe('ropeswitch bench --scenarios serve', () => {
  it('exits 0 and reports one serve run per (backend, policy asked), nothing of the policy scenarios', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(report.settings).toMatchObject({ scenarios: ['serve'], serve: { sequences: SEQUENCES, newTokens: NEW_TOKENS } });
    expect(report.serve).toHaveLength(1);
    expect(serve).toMatchObject({ backend: 'reference', policy: 'shadow-prefill', sequences: SEQUENCES, newTokens: NEW_TOKENS });
    // The reference backend has no row slots to size.
    expect(serve.rowSlots).toBeNull();
    expect(report.runs).toEqual([]);
    expect(report.scenarios).toEqual([]);
  });

  it('every sequence batched chose its solo run\'s tokens, with the same logits bit for bit (reference backend)', () => {
    expect(serve.identicalToSolo).toBe(true);
    expect(serve.differingSequences).toBe(0);
    expect(serve.maxLogitDiff).toBe(0);
  });

  it('throughput and time per output token of both sides are finite positive figures; the ratio is their quotient', () => {
    for (const side of [serve.batched, serve.solo]) {
      for (const value of Object.values(side)) expect(Number.isFinite(value) && value > 0, JSON.stringify(side)).toBe(true);
      expect(side.p99TokenMs).toBeGreaterThanOrEqual(side.p50TokenMs);
      expect(side.tokensPerSecond).toBeCloseTo((SEQUENCES * NEW_TOKENS) / side.seconds, 6);
    }
    expect(Number.isFinite(serve.throughputRatio) && serve.throughputRatio > 0).toBe(true);
    expect(serve.throughputRatio).toBeCloseTo(serve.batched.tokensPerSecond / serve.solo.tokensPerSecond, 9);
    expect(serve.peakRssBytes).toBe(Math.max(serve.batched.peakRssBytes, serve.solo.peakRssBytes));
  });

  it('the shared system prompt is a prefix hit for every sequence after the first, and the batched side ran fewer tokens for it', () => {
    // Every prompt after the first hits; so does every crossing sequence's long copy after the first
    // (shadowPrefill starts it from the first one's, left in the prefix cache once caught up).
    const copies = serve.crossingSteps.filter((s) => s !== null).length;
    expect(copies).toBeGreaterThan(1);
    expect(serve.prefix.hits).toBe(SEQUENCES - 1 + copies - 1);
    expect(serve.prefix.misses).toBe(2);
    expect(serve.prefixHitRate).toBeCloseTo(serve.prefix.hits / (serve.prefix.hits + serve.prefix.misses), 9);
    expect(serve.prefix.hitTokens).toBeGreaterThanOrEqual((SEQUENCES - 1) * serve.systemTokens);
    expect(serve.prefix.bytes).toBeLessThanOrEqual(serve.prefix.maxBytes);
    expect(serve.solo.forwardTokens - serve.batched.forwardTokens).toBe(serve.prefix.hitTokens);
  });

  it('the scheduler merged forwards of several sequences into its steps', () => {
    const s = serve.scheduler;
    // Every session forward: a prompt in chunks of at most 256 (one each here) and NEW_TOKENS − 1 decode steps.
    expect(s.forwards).toBe(SEQUENCES * NEW_TOKENS);
    expect(s.maxForwardsInStep).toBeGreaterThan(1);
    expect(s.steps).toBeLessThan(s.forwards);
    expect(s.soloRetries).toBe(0);
  });

  it('some sequences cross L at different steps, the others never; shadow-prefill swapped in a copy for each that crossed', () => {
    const crossing = serve.crossingSteps.filter((c): c is number => c !== null);
    expect(crossing.length).toBeGreaterThan(0);
    expect(crossing.length).toBeLessThan(SEQUENCES);
    expect(new Set(crossing).size).toBe(crossing.length);
    serve.crossingSteps.forEach((c, i) => {
      const last = serve.promptTokens[i]! + NEW_TOKENS - 1; // the last forward's length
      if (c === null) expect(last).toBeLessThanOrEqual(report.threshold);
      else expect(serve.promptTokens[i]! + c).toBe(report.threshold + 1);
    });
    expect(new Set(serve.promptTokens).size).toBe(SEQUENCES);
    expect(serve.arrivals).toEqual([0, 1, 2]);
    expect(serve.events['shadow-swap']).toBe(crossing.length);
  });

  it('report.md and report.html have the serve section; the targets list identity (met) and the ratio (the figure only here)', async () => {
    const md = await readFile(join(out, 'report.md'), 'utf8');
    expect(run.stdout).toBe(md);
    expect(md).toContain('## Scenario serve');
    const rate = `${(serve.prefixHitRate! * 100).toFixed(1).replace('.', '\\.')}%`;
    expect(md).toMatch(new RegExp(`\\| reference \\| shadow-prefill \\| 3 \\| — \\| ✓ \\| 0 \\| ${rate} \\|`));
    expect(md).toMatch(/\| fwd tokens batched \/ solo \|/);
    const html = await readFile(join(out, 'report.html'), 'utf8');
    expect(html).toContain('<section id="scenario-serve">');
    expect(html).toContain('<td class="c ok">✓</td>');
    const identity = report.targets.find((t) => t.name === 'serve identical to solo')!;
    expect(identity).toMatchObject({ value: 0, limit: 0, met: true });
    const ratio = report.targets.find((t) => t.name === 'serve throughputRatio')!;
    expect(ratio).toMatchObject({ limit: 3, atLeast: true, met: null });
    expect(ratio.value).toBeCloseTo(serve.throughputRatio, 9);
    expect(md).toMatch(/\| serve throughputRatio \| [^|]+ \| [\d.]+ \| ≥ 3 \| – \|/);
  });
});

describe('ropeswitch bench --scenarios serve on onnxruntime: the export\'s row slots', () => {
  const serveOn = async (extra: string[]) => {
    const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-bench-serve-ort-'));
    tempDirs.push(dir);
    const r = await runCli([
      'bench', '--quick', '--backends', 'onnxruntime', '--scenarios', 'serve', '--policies', 'shadow-prefill', '--no-task',
      '--serve-sequences', String(SEQUENCES), '--serve-new-tokens', String(NEW_TOKENS), '--out', dir, ...extra,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as BenchReport;
    return { run: report.serve![0]!, report, md: r.stdout };
  };

  it('unless told, an export with a slot for every row of the fullest step (each sequence, and a copy beside each crossing one)', async () => {
    const { run: ort, md } = await serveOn([]);
    const crossing = ort.crossingSteps.filter((c) => c !== null).length;
    expect(ort.rowSlots).toBe(SEQUENCES + crossing);
    expect(ort.rowSlots).toBe(5);
    expect(ort.identicalToSolo).toBe(true);
    expect(ort.maxLogitDiff).toBeLessThanOrEqual(1e-5);
    expect(md).toMatch(/\| onnxruntime \| shadow-prefill \| 3 \| 5 \| ✓ \|/);
  }, 120_000);

  it('after another scenario on the default slots, serve runs on an export of its own slots', async () => {
    const { run: ort, report: full } = await serveOn(['--scenarios', 'near,serve']);
    expect(full.runs.length).toBeGreaterThan(0);
    expect(ort.rowSlots).toBe(5);
    expect(ort.identicalToSolo).toBe(true);
  }, 120_000);

  it('--rows-per-run wins', async () => {
    const { run: ort } = await serveOn(['--rows-per-run', '2']);
    expect(ort.rowSlots).toBe(2);
    expect(ort.identicalToSolo).toBe(true);
  }, 120_000);
});

describe('the serve plan', () => {
  it('its fullest step: every sequence and a copy beside each crossing one, at most 64 row slots', () => {
    for (const [sequences, slots] of [[8, 12], [3, 5], [1, 2], [64, 64]] as const) {
      expect(serveRowSlots(sequences)).toBe(slots);
      // The plan's own crossing sequences, the same count.
      const crossing = planServe(4096, 131072, sequences, 32, 100, 1).crossingSteps.filter((c) => c !== null).length;
      expect(serveRowSlots(sequences)).toBe(Math.min(64, sequences + crossing));
    }
  });

  it('eight sequences sharing a system prompt: four cross L at four different steps, four stay below, all lengths differ', () => {
    const plan = planServe(4096, 131072, 8, 32, 100, 1);
    expect(plan.crossingSteps.filter((c) => c !== null)).toEqual([6, 13, 19, 26]);
    expect(plan.crossingSteps.filter((c) => c === null)).toHaveLength(4);
    expect(new Set(plan.promptTokens).size).toBe(8);
    const system = plan.prompts[0]!.slice(0, plan.systemTokens);
    for (const [i, prompt] of plan.prompts.entries()) {
      expect(prompt).toHaveLength(plan.promptTokens[i]!);
      expect(prompt.slice(0, plan.systemTokens)).toEqual(system);
      expect(prompt.length - plan.systemTokens).toBeGreaterThanOrEqual(32);
    }
    // Sequences past the first look different right after the system prompt, so the shared prefix is the system prompt.
    expect(new Set(plan.prompts.map((p) => p[plan.systemTokens])).size).toBeGreaterThan(1);
    expect(plan.arrivals).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(planServe(4096, 131072, 8, 32, 100, 1)).toEqual(plan);
  });

  it('more sequences than decode steps: the last ones arrive together at the first one\'s last step', () => {
    expect(planServe(256, 8192, 5, 3, 50, 1).arrivals).toEqual([0, 1, 2, 2, 2]);
  });

  it('says why a plan does not fit the model', () => {
    expect(servePlanProblem(64, 256, 64, 64)).toMatch(/no room for a shared system prompt/);
    expect(servePlanProblem(4096, 4100, 2, 32)).toMatch(/runs past the model's 4100 positions/);
    expect(servePlanProblem(4096, 131072, 8, 32)).toBeUndefined();
  });
});

describe('ropeswitch bench serve usage errors (exit 2, one line, nothing run)', () => {
  const cases: [string, string[], RegExp][] = [
    ['zero sequences', ['--scenarios', 'serve', '--serve-sequences', '0'], /--serve-sequences must be an integer in \[1, 64\], got '0'/],
    ['a sequence count that is no number', ['--scenarios', 'serve', '--serve-sequences', 'many'], /--serve-sequences must be an integer/],
    ['one new token (nothing to cross at)', ['--scenarios', 'serve', '--serve-new-tokens', '1'], /--serve-new-tokens must be an integer in \[2, 4096\]/],
    ['serve flags without the serve scenario', ['--scenarios', 'near', '--serve-sequences', '4'], /--serve-sequences and --serve-new-tokens apply to --scenarios serve/],
    ['a plan larger than the model', ['--model', 'trained', '--scenarios', 'serve', '--serve-sequences', '64', '--serve-new-tokens', '64'], /bench: serve: the model's threshold L = 64 leaves no room/],
  ];
  it.each(cases)('%s', async (_what, args, message) => {
    const r = await runCli(['bench', '--quick', '--no-task', ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^ropeswitch: [^\n]+\n$/);
    expect(r.stderr).toMatch(message);
  });

  it('--scenarios lists serve among the scenarios it takes', async () => {
    const r = await runCli(['bench', '--scenarios', 'middle']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--scenarios must be a comma-separated list of near, far, serve/);
  });
});
