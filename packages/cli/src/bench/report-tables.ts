/**
 * The tables of a bench report as formatted text cells, shared by `report.md` and `report.html`
 * so both say the same thing. Cells are plain (unescaped) strings: each renderer escapes for its
 * own format.
 */
import type { BenchReport, BenchRun, BenchScenario, TaskRun } from './bench-report.js';
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

/** The runs of one scenario, by backend then policy in the settings' order. */
export function scenarioRuns(report: BenchReport, scenario: BenchScenario['name']): BenchRun[] {
  return report.runs
    .map((run, index) => ({ run, index }))
    .filter(({ run }) => run.scenario === scenario)
    .sort(
      (a, b) =>
        backendRank(report, a.run.backend) - backendRank(report, b.run.backend) ||
        policyRank(report, a.run.policy) - policyRank(report, b.run.policy) ||
        a.index - b.index,
    )
    .map(({ run }) => run);
}

function sortedTask(report: BenchReport): TaskRun[] {
  return report.task
    .map((run, index) => ({ run, index }))
    .sort(
      (a, b) =>
        a.run.n - b.run.n ||
        backendRank(report, a.run.backend) - backendRank(report, b.run.backend) ||
        policyRank(report, a.run.policy) - policyRank(report, b.run.policy) ||
        a.index - b.index,
    )
    .map(({ run }) => run);
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
  return (
    `prompt ${formatCount(scenario.promptTokens)} tokens, ${formatCount(scenario.steps)} decode steps; ` +
    `step ${scenario.crossingStep} is the first forward over L = ${formatCount(report.threshold)} tokens; ${oracleText}`
  );
}

/** Quality against the no-cache oracle, one row per (backend, policy), over the steps after the crossing. */
export function qualityTable(report: BenchReport, scenario: BenchScenario['name']): ReportTable {
  return {
    columns: [
      left('backend'),
      left('policy'),
      right('max |Δlogit|'),
      right('mean KL'),
      right('max KL'),
      right('top-1 agree'),
      right('steps compared'),
    ],
    rows: scenarioRuns(report, scenario).map((r) => [
      r.backend,
      r.policy,
      formatSmall(r.quality.maxAbsLogitDiff),
      formatSmall(r.quality.meanKl),
      formatSmall(r.quality.maxKl),
      formatPercent(r.quality.top1Agreement),
      formatCount(r.quality.steps),
    ]),
  };
}

/** Cost, one row per (backend, policy): times in ms (medians over the repeats), ratios to `stale`'s median step. */
export function costTable(report: BenchReport, scenario: BenchScenario['name']): ReportTable {
  return {
    columns: [
      left('backend'),
      left('policy'),
      right('TTFT ms'),
      right('median step ms'),
      right('p99 step ms'),
      right('max step ms'),
      right('crossing step ms'),
      right('crossing ratio'),
      right('max step ratio'),
      right('total ms'),
      right('extra fwd tokens'),
      right('peak cache'),
    ],
    rows: scenarioRuns(report, scenario).map((r) => [
      r.backend,
      r.policy,
      formatMs(r.cost.ttftMs),
      formatMs(r.cost.medianStepMs),
      formatMs(r.cost.p99StepMs),
      formatMs(r.cost.maxStepMs),
      formatMs(r.cost.crossingStepMs),
      formatRatio(r.cost.crossingRatio),
      formatRatio(r.cost.maxStepRatio),
      formatMs(r.cost.totalMs),
      formatCount(r.cost.extraForwardTokens),
      formatBytes(r.cost.peakCacheBytes),
    ]),
  };
}

/** min–max over the timed repeats of the figures the cost table gives as medians. */
export function spreadTable(report: BenchReport, scenario: BenchScenario['name']): ReportTable {
  return {
    columns: [left('backend'), left('policy'), right('TTFT ms'), right('median step ms'), right('crossing step ms'), right('total ms')],
    rows: scenarioRuns(report, scenario).map((r) => [
      r.backend,
      r.policy,
      formatMsRange(r.spread.ttftMs),
      formatMsRange(r.spread.medianStepMs),
      formatMsRange(r.spread.crossingStepMs),
      formatMsRange(r.spread.totalMs),
    ]),
  };
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
      formatNumber(t.limit),
      metMark(t.met),
      t.comparedWith ?? NOT_APPLICABLE,
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
    ['threshold L', formatCount(report.threshold)],
    ['machine', `${machine.cpu} × ${machine.cores}, ${machine.platform}, node ${machine.node}`],
    ['backends', settings.backends.join(', ')],
    ['policies', settings.policies.join(', ')],
    ['scenarios', settings.scenarios.join(', ')],
    ['new tokens', formatCount(settings.newTokens)],
    ['repeats', `${settings.repeats} timed (cost figures are their medians)`],
    ['quick', settings.quick ? 'yes' : 'no'],
    ['created', report.createdAt],
  ];
}
