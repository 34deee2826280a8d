/**
 * The tables of a bench report as formatted text cells, shared by `report.md` and `report.html`
 * so both say the same thing. Cells are plain (unescaped) strings: each renderer escapes for its
 * own format.
 */
import type { BenchReport, BenchRun, BenchScenario, ServeRun, TaskRun } from './bench-report.js';
import {
  NOT_APPLICABLE,
  formatBytes,
  formatCount,
  formatMs,
  formatMsRange,
  formatNumber,
  formatPercent,
  formatRatio,
  formatSmall,
} from './report-format.js';

export interface ReportColumn {
  readonly title: string;
  /** Numbers are right-aligned, names left. */
  readonly align: 'left' | 'right' | 'center';
}

export interface ReportTable {
  readonly columns: readonly ReportColumn[];
  readonly rows: readonly (readonly string[])[];
}

const left = (title: string): ReportColumn => ({ title, align: 'left' });
const right = (title: string): ReportColumn => ({ title, align: 'right' });
const center = (title: string): ReportColumn => ({ title, align: 'center' });

/** Orders by the settings' policy order (the user's `--policies`), unknown names last, stable. */
function policyRank(report: BenchReport, policy: string): number {
  const i = report.settings.policies.indexOf(policy);
  return i === -1 ? report.settings.policies.length : i;
}

function backendRank(report: BenchReport, backend: string): number {
  const i = report.settings.backends.indexOf(backend);
  return i === -1 ? report.settings.backends.length : i;
}

/** Compares by backend then policy in the settings' order (sorts are stable: ties keep the report's order). */
function bySettingsOrder(report: BenchReport): (a: { backend: string; policy: string }, b: { backend: string; policy: string }) => number {
  return (a, b) => backendRank(report, a.backend) - backendRank(report, b.backend) || policyRank(report, a.policy) - policyRank(report, b.policy);
}

/** The runs of one scenario plan (on the backends that ran it), by backend then policy in the settings' order. */
export function scenarioRuns(report: BenchReport, scenario: BenchScenario): BenchRun[] {
  return report.runs.filter((run) => run.scenario === scenario.name && scenario.backends.includes(run.backend)).sort(bySettingsOrder(report));
}

/** A scenario's heading: its name, and the backends when another plan of it ran elsewhere (a shortened one). */
export function scenarioTitle(report: BenchReport, scenario: BenchScenario): string {
  const plans = report.scenarios.filter((s) => s.name === scenario.name).length;
  return plans > 1 ? `${scenario.name} (${scenario.backends.join(', ')})` : scenario.name;
}

function sortedTask(report: BenchReport): TaskRun[] {
  const order = bySettingsOrder(report);
  return [...report.task].sort((a, b) => a.n - b.n || order(a, b));
}

/** Copy accuracy per (n, backend, policy), HF transformers' figure beside each of ours. */
export function taskTable(report: BenchReport): ReportTable {
  return {
    columns: [
      right('n'),
      right('prompt tokens'),
      left('backend'),
      left('policy'),
      right('token acc'),
      right('HF token acc'),
      right('post-crossing acc'),
      right('HF post-crossing'),
      right('exact match'),
      right('sequences'),
    ],
    rows: sortedTask(report).map((t) => [
      String(t.n),
      formatCount(t.promptTokens),
      t.backend,
      t.policy,
      formatPercent(t.tokenAccuracy),
      formatPercent(t.hf?.tokenAccuracy ?? null),
      formatPercent(t.postCrossingAccuracy),
      formatPercent(t.hf?.postCrossingAccuracy ?? null),
      formatPercent(t.exactMatch),
      formatCount(t.sequences),
    ]),
  };
}

/** One line on what a scenario did: prompt, steps, where it crosses L. */
export function scenarioSummary(report: BenchReport, scenario: BenchScenario): string {
  const oracle = scenario.oracleSteps.length;
  const oracleText = oracle === scenario.steps + 1 ? 'oracle at every step' : `oracle at ${formatCount(oracle)} of ${formatCount(scenario.steps + 1)} steps`;
  const adjusted = scenario.adjustments.length > 0 ? `; adjusted: ${scenario.adjustments.join('; ')}` : '';
  return (
    `prompt ${formatCount(scenario.promptTokens)} tokens, ${formatCount(scenario.steps)} decode steps; ` +
    `step ${scenario.crossingStep} is the first forward over L = ${formatCount(report.threshold)} tokens; ${oracleText}${adjusted}`
  );
}

/** One row per (backend, policy) of a scenario: those two names, then `columns` filled by `cells`. */
function runTable(
  report: BenchReport,
  scenario: BenchScenario,
  columns: readonly ReportColumn[],
  cells: (run: BenchRun) => readonly string[],
): ReportTable {
  return {
    columns: [left('backend'), left('policy'), ...columns],
    rows: scenarioRuns(report, scenario).map((r) => [r.backend, r.policy, ...cells(r)]),
  };
}

/** Quality against the no-cache oracle, one row per (backend, policy), over the steps after the crossing. */
export function qualityTable(report: BenchReport, scenario: BenchScenario): ReportTable {
  return runTable(
    report,
    scenario,
    [right('max |Δlogit|'), right('mean KL'), right('max KL'), right('top-1 agree'), right('steps compared')],
    ({ quality: q }) => [formatSmall(q.maxAbsLogitDiff), formatSmall(q.meanKl), formatSmall(q.maxKl), formatPercent(q.top1Agreement), formatCount(q.steps)],
  );
}

/** Cost, one row per (backend, policy): times in ms (medians over the repeats), ratios to `stale`'s median step. */
export function costTable(report: BenchReport, scenario: BenchScenario): ReportTable {
  return runTable(
    report,
    scenario,
    [
      right('TTFT ms'),
      right('median step ms'),
      right('p99 step ms'),
      right('max step ms'),
      right('crossing step ms'),
      right('crossing ratio'),
      right('max step ratio'),
      right('repeatable max ratio'),
      right('floor crossing ratio'),
      right('floor max ratio'),
      right('× stale same step (max)'),
      right('total ms'),
      right('extra fwd tokens'),
      right('peak cache'),
      right('peak RSS'),
    ],
    ({ cost: c }) => [
      formatMs(c.ttftMs),
      formatMs(c.medianStepMs),
      formatMs(c.p99StepMs),
      formatMs(c.maxStepMs),
      formatMs(c.crossingStepMs),
      formatRatio(c.crossingRatio),
      formatRatio(c.maxStepRatio),
      formatRatio(c.repeatableMaxStepRatio),
      formatRatio(c.floorCrossingRatio),
      formatRatio(c.floorMaxStepRatio),
      c.pairedMaxStepRatio === null ? NOT_APPLICABLE : `${formatRatio(c.pairedMaxStepRatio)} @${c.pairedMaxStep}`,
      formatMs(c.totalMs),
      formatCount(c.extraForwardTokens),
      formatBytes(c.peakCacheBytes),
      formatBytes(c.peakRssBytes),
    ],
  );
}

/** min–max over the timed repeats of the figures the cost table gives as medians. */
export function spreadTable(report: BenchReport, scenario: BenchScenario): ReportTable {
  return runTable(
    report,
    scenario,
    [right('TTFT ms'), right('median step ms'), right('crossing step ms'), right('total ms')],
    ({ spread: s }) => [formatMsRange(s.ttftMs), formatMsRange(s.medianStepMs), formatMsRange(s.crossingStepMs), formatMsRange(s.totalMs)],
  );
}

/** ✓ met, ✗ missed, – not measured in this run. */
export function metMark(met: boolean | null): string {
  if (met === null) return NOT_APPLICABLE;
  return met ? '✓' : '✗';
}

/** The performance targets, checked on this run. */
export function targetsTable(report: BenchReport): ReportTable {
  return {
    columns: [left('target'), left('what'), right('value'), right('limit'), center('met'), left('compared with')],
    rows: report.targets.map((t) => [
      t.name,
      t.description,
      formatNumber(t.value),
      t.atLeast ? `≥ ${formatNumber(t.limit)}` : formatNumber(t.limit),
      metMark(t.met),
      t.comparedWith ?? NOT_APPLICABLE,
    ]),
  };
}

/** The serve runs, by backend then policy in the settings' order. */
export function serveRuns(report: BenchReport): ServeRun[] {
  return [...(report.serve ?? [])].sort(bySettingsOrder(report));
}

/** One line on what the serve scenario fed (the same plan on every backend: it depends on the model only). */
export function serveSummary(report: BenchReport): string {
  const run = report.serve?.[0];
  if (!run) return 'not run';
  const crossing = run.crossingSteps.flatMap((c, i) => (c === null ? [] : [`${i} at step ${c}`]));
  return (
    `${run.sequences} sequences of ${formatCount(run.newTokens)} new tokens (greedy), prompts of ${formatCount(Math.min(...run.promptTokens))}–${formatCount(Math.max(...run.promptTokens))} tokens ` +
    `sharing a ${formatCount(run.systemTokens)}-token system prompt; sequence i arrives after i decode steps of the first; ` +
    `${crossing.length} cross L = ${formatCount(report.threshold)} (sequence ${crossing.join(', ')}; sequences counted from 0), the others stay below it. ` +
    'Batched: one BatchScheduler (default limits) with a PrefixCache; solo: each sequence alone on a fresh Session, no scheduler, no prefix cache'
  );
}

/** Throughput and latency of the serve scenario, batched beside solo, with whether every sequence matched its solo run. */
export function serveTable(report: BenchReport): ReportTable {
  return {
    columns: [
      left('backend'),
      left('policy'),
      right('sequences'),
      right('row slots'),
      center('identical to solo'),
      right('max |Δlogit|'),
      right('prefix hit rate'),
      right('batched s'),
      right('batched tok/s'),
      right('solo s'),
      right('solo tok/s'),
      right('throughput ratio'),
      right('batched ms/token p50 / p99'),
      right('solo ms/token p50 / p99'),
      right('TTFT p50 ms batched / solo'),
      right('peak RSS'),
    ],
    rows: serveRuns(report).map((r) => [
      r.backend,
      r.policy,
      formatCount(r.sequences),
      r.rowSlots === null || r.rowSlots === undefined ? '—' : formatCount(r.rowSlots),
      metMark(r.identicalToSolo),
      formatSmall(r.maxLogitDiff),
      formatPercent(r.prefixHitRate),
      formatNumber(r.batched.seconds),
      formatNumber(r.batched.tokensPerSecond),
      formatNumber(r.solo.seconds),
      formatNumber(r.solo.tokensPerSecond),
      formatRatio(r.throughputRatio),
      `${formatMs(r.batched.p50TokenMs)} / ${formatMs(r.batched.p99TokenMs)}`,
      `${formatMs(r.solo.p50TokenMs)} / ${formatMs(r.solo.p99TokenMs)}`,
      `${formatMs(r.batched.p50TtftMs)} / ${formatMs(r.solo.p50TtftMs)}`,
      formatBytes(r.peakRssBytes),
    ]),
  };
}

/** What the batched side's scheduler and prefix cache did, and the backend work of each side. */
export function serveWorkTable(report: BenchReport): ReportTable {
  return {
    columns: [
      left('backend'),
      left('policy'),
      right('steps'),
      right('forwards'),
      right('rows'),
      right('max rows / forwards in a step'),
      right('peak queue'),
      right('solo retries'),
      right('prefix hits / misses'),
      right('tokens reused'),
      right('fwd tokens batched / solo'),
      left('events (batched)'),
    ],
    rows: serveRuns(report).map((r) => [
      r.backend,
      r.policy,
      formatCount(r.scheduler.steps),
      formatCount(r.scheduler.forwards),
      formatCount(r.scheduler.rows),
      `${formatCount(r.scheduler.maxRowsInStep)} / ${formatCount(r.scheduler.maxForwardsInStep)}`,
      formatCount(r.scheduler.peakQueue),
      formatCount(r.scheduler.soloRetries),
      `${formatCount(r.prefix.hits)} / ${formatCount(r.prefix.misses)}`,
      formatCount(r.prefix.hitTokens),
      `${formatCount(r.batched.forwardTokens)} / ${formatCount(r.solo.forwardTokens)}`,
      Object.entries(r.events).map(([type, n]) => `${type} ×${n}`).join(', ') || NOT_APPLICABLE,
    ]),
  };
}

/** Machine, model and settings as (what, value) pairs. */
export function runDetails(report: BenchReport): (readonly [string, string])[] {
  const { machine, model, settings } = report;
  return [
    ['model', model.name],
    [
      'architecture',
      `${model.family}, ${model.numLayers} layers, hidden ${model.hiddenSize}, ` +
        `${model.numHeads} heads / ${model.numKvHeads} kv heads × ${model.headDim}, vocab ${formatCount(model.vocabSize)}, rope ${model.ropeType}`,
    ],
    [
      'size',
      `${formatCount(model.parameters)} parameters; ${formatBytes(model.checkpointBytes)} as stored, ${formatBytes(model.weightBytes)} in float32`,
    ],
    ['threshold L', formatCount(report.threshold)],
    ['machine', `${machine.cpu} × ${machine.cores}, ${machine.platform}, node ${machine.node}`],
    ['backends', settings.backends.join(', ')],
    ...(settings.backendFlags ? [['backend flags', Object.entries(settings.backendFlags).map(([k, v]) => `${k} ${v}`).join(', ')] as const] : []),
    ['policies', settings.policies.join(', ')],
    ['scenarios', settings.scenarios.join(', ')],
    ['new tokens', formatCount(settings.newTokens)],
    ...(settings.serve ? [['serve', `${settings.serve.sequences} sequences of ${settings.serve.newTokens} new tokens`] as const] : []),
    ['repeats', `${settings.repeats} timed (cost figures are their medians)`],
    ['quick', settings.quick ? 'yes' : 'no'],
    ['budget', settings.budgetMinutes === null ? 'none: every scenario as defined' : `${formatCount(settings.budgetMinutes)} min per scenario and backend, by estimate`],
    ['created', report.createdAt],
  ];
}
