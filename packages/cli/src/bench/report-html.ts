/**
 * `report.html`: one self-contained file that opens offline. Inline CSS (light and dark), inline
 * SVG charts drawn here, no scripts, fonts, images or links to anything outside it. Per scenario:
 * KL(oracle ‖ policy) and latency per step, one line per policy, the crossing marked; then the same
 * tables as `report.md`. Every string taken from the report is escaped (model names are user paths).
 */
import type { BenchReport, BenchRun, BenchScenario } from './bench-report.js';
import { escapeHtml } from './html-escape.js';
import type { ChartPoint } from './min-max-downsample.js';
import {
  costTable,
  qualityTable,
  runDetails,
  scenarioRuns,
  scenarioSummary,
  scenarioTitle,
  serveSummary,
  serveTable,
  serveWorkTable,
  spreadTable,
  targetsTable,
  taskTable,
  type ReportTable,
} from './report-tables.js';
import { SERIES_COLOURS, svgLineChart, type ChartSeries } from './svg-line-chart.js';

/** KL below this is float noise of an exact policy: drawn at the axis' floor rather than stretching it. */
const KL_FLOOR = 1e-12;
/** Events listed per run before the rest is counted. */
const EVENTS_SHOWN = 12;

// Okabe–Ito-like hues, lightened for the dark background; order follows --policies.
const LIGHT = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#6b6b6b', '#8c564b'];
const DARK = ['#5cb3ff', '#ff8a4c', '#3fd0a4', '#f0a1cf', '#ffc14d', '#9ad7ff', '#bdbdbd', '#d39b85'];

const CSS = `
:root{color-scheme:light dark;--fg:#1f2328;--muted:#59636e;--bg:#ffffff;--panel:#f6f8fa;--border:#d1d9e0;--grid:#e6eaef;--axis:#8c959f;--ok:#1a7f37;--bad:#cf222e;--mark:#9a6700;
${LIGHT.map((c, i) => `--c${i}:${c};`).join('')}}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--panel:#151b23;--border:#3d444d;--grid:#262c36;--axis:#656c76;--ok:#3fb950;--bad:#f85149;--mark:#d29922;
${DARK.map((c, i) => `--c${i}:${c};`).join('')}}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1280px;padding:24px;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--border)}h3{font-size:15px;margin:18px 0 6px}
p{margin:4px 0 10px}.muted,.note{color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px;margin:10px 0}
figure{margin:0;padding:10px 12px;background:var(--panel);border:1px solid var(--border);border-radius:8px}
figcaption{font-weight:600;margin-bottom:4px}figcaption .note{font-weight:400}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
svg.chart text{fill:var(--fg);font-size:11px}
svg.chart .tick.y{text-anchor:end;dominant-baseline:middle}svg.chart .tick.x{text-anchor:middle}
svg.chart .axis-label{fill:var(--muted);text-anchor:middle;font-size:12px}
svg.chart .grid{stroke:var(--grid);stroke-width:1;fill:none}svg.chart .axis{stroke:var(--axis);stroke-width:1;fill:none}
svg.chart .crossing line{stroke:var(--mark);stroke-width:1.5;stroke-dasharray:5 3}svg.chart .crossing text{fill:var(--mark);font-weight:600}
svg.chart .series{fill:none;stroke-linejoin:round;stroke-linecap:round;opacity:.92}
${LIGHT.map((_, i) => `.series.s${i}{stroke:var(--c${i})}.swatch.s${i}{background:var(--c${i})}`).join('')}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 14px;margin:2px 0 6px;padding:0;font-size:12px}
.legend li{display:flex;align-items:center;gap:6px}.swatch{display:inline-block;width:18px;height:3px;border-radius:2px}
.swatch.dashed{background:none!important;border-top:3px dashed var(--muted);height:0}
.table-wrap{overflow-x:auto;margin:6px 0 12px}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 9px;border-bottom:1px solid var(--border);white-space:nowrap}th{white-space:normal;vertical-align:bottom;text-align:left;min-width:4em}
th{background:var(--panel);font-weight:600}td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}td.c,th.c{text-align:center}
td.ok{color:var(--ok);font-weight:700}td.bad{color:var(--bad);font-weight:700}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:6px 0}dt{color:var(--muted)}dd{margin:0}
details{margin:6px 0 12px}summary{cursor:pointer;color:var(--muted)}details ul{margin:4px 0;padding-left:20px;font-size:12px}
code{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px}
`;

function htmlTable(table: ReportTable): string {
  const cls = (align: string) => (align === 'right' ? ' class="r"' : align === 'center' ? ' class="c"' : '');
  const head = table.columns.map((c) => `<th${cls(c.align)}>${escapeHtml(c.title)}</th>`).join('');
  const body = table.rows
    .map((row) => {
      const cells = row.map((cell, i) => {
        const align = table.columns[i]?.align ?? 'left';
        const mark = cell === '✓' ? ' ok' : cell === '✗' ? ' bad' : '';
        const c = align === 'right' ? 'r' : align === 'center' ? 'c' : '';
        const classes = `${c}${mark}`.trim();
        return `<td${classes ? ` class="${classes}"` : ''}>${escapeHtml(cell)}</td>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');
  return `<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

/** A policy keeps one colour in every chart: its place in `--policies`, then first appearance. */
function colourIndex(report: BenchReport): (policy: string) => number {
  const order = [...report.settings.policies];
  for (const run of report.runs) if (!order.includes(run.policy)) order.push(run.policy);
  return (policy) => order.indexOf(policy);
}

function legend(series: readonly ChartSeries[]): string {
  const items = series.map((s) => {
    const dashed = s.colour >= SERIES_COLOURS ? ' dashed' : '';
    return `<li><span class="swatch s${s.colour % SERIES_COLOURS}${dashed}"></span>${escapeHtml(s.name)}</li>`;
  });
  return `<ul class="legend">${items.join('')}</ul>`;
}

function figure(caption: string, note: string, series: readonly ChartSeries[], svg: string): string {
  return `<figure><figcaption>${escapeHtml(caption)} <span class="note">${escapeHtml(note)}</span></figcaption>${legend(series)}${svg}</figure>`;
}

function klPoints(run: BenchRun): ChartPoint[] {
  const points: ChartPoint[] = [];
  run.series.kl.forEach((kl, step) => {
    if (kl !== null && Number.isFinite(kl)) points.push({ x: step, y: kl });
  });
  return points;
}

/** Decode steps only: step 0 is the prompt's forward (TTFT, in the table), on another scale altogether. */
function stepPoints(run: BenchRun): ChartPoint[] {
  const points: ChartPoint[] = [];
  run.series.stepMs.forEach((ms, step) => {
    if (step > 0 && Number.isFinite(ms)) points.push({ x: step, y: ms });
  });
  return points;
}

function scenarioCharts(report: BenchReport, scenario: BenchScenario, colour: (policy: string) => number): string {
  const runs = scenarioRuns(report, scenario);
  const backends = [...new Set(runs.map((r) => r.backend))];
  const marker = { x: scenario.crossingStep, label: `crossing · step ${scenario.crossingStep}` };
  const figures: string[] = [];
  for (const backend of backends) {
    const own = runs.filter((r) => r.backend === backend);
    const suffix = backends.length > 1 ? ` (${backend})` : '';
    const klSeries = own.map((r) => ({ name: r.policy, colour: colour(r.policy), points: klPoints(r) }));
    if (klSeries.some((s) => s.points.length > 0)) {
      const svg = svgLineChart({
        title: `KL(oracle ‖ policy) per step, scenario ${scenario.name}${suffix}`,
        xLabel: 'step (0 = the prompt’s forward)',
        yLabel: 'KL(oracle ‖ policy), nats',
        yScale: 'log',
        yFloor: KL_FLOOR,
        series: klSeries,
        markers: [marker],
      });
      figures.push(figure(`KL to the oracle${suffix}`, `log scale, steps with an oracle only; ≤${KL_FLOOR} drawn at the floor`, klSeries, svg));
    } else {
      figures.push(`<figure><figcaption>KL to the oracle${escapeHtml(suffix)}</figcaption><p class="note">No oracle steps in this scenario.</p></figure>`);
    }
    const msSeries = own.map((r) => ({ name: r.policy, colour: colour(r.policy), points: stepPoints(r) }));
    if (msSeries.some((s) => s.points.length > 0)) {
      const svg = svgLineChart({
        title: `Step time per decode step, scenario ${scenario.name}${suffix}`,
        xLabel: 'decode step',
        yLabel: 'step time, ms',
        yScale: 'log',
        series: msSeries,
        markers: [marker],
      });
      figures.push(figure(`Latency per step${suffix}`, 'ms, log scale; the prompt’s forward (TTFT) is in the table', msSeries, svg));
    }
  }
  return `<div class="charts">${figures.join('\n')}</div>`;
}

function eventsList(report: BenchReport, scenario: BenchScenario): string {
  const runs = scenarioRuns(report, scenario).filter((r) => r.events.length > 0);
  if (runs.length === 0) return '';
  const items = runs.map((r) => {
    const shown = r.events.slice(0, EVENTS_SHOWN).map((e) => `<code>${escapeHtml(e)}</code>`).join(', ');
    const more = r.events.length > EVENTS_SHOWN ? ` … and ${r.events.length - EVENTS_SHOWN} more` : '';
    return `<li>${escapeHtml(r.backend)} / ${escapeHtml(r.policy)}: ${shown}${more}</li>`;
  });
  return `<details><summary>Policy events</summary><ul>${items.join('')}</ul></details>`;
}

export function renderHtml(report: BenchReport): string {
  const colour = colourIndex(report);
  const title = `ropeswitch bench: ${report.model.name}, L = ${report.threshold}`;
  const body: string[] = [];
  body.push(`<header><h1>${escapeHtml(title)}</h1>`);
  body.push(
    `<p class="muted">${escapeHtml(report.machine.cpu)} × ${report.machine.cores}, node ${escapeHtml(report.machine.node)} · ` +
      `${escapeHtml(report.settings.policies.join(', '))} · ${escapeHtml(report.createdAt)}</p></header>`,
  );

  if (report.task.length > 0) {
    body.push(
      '<section id="task"><h2>Copy task on the trained model</h2>',
      '<p>Copy accuracy per policy at copy lengths n whose copy crosses L; HF transformers 4.45 on the same kind of policy beside ours.</p>',
      htmlTable(taskTable(report)),
      '</section>',
    );
  }

  for (const scenario of report.scenarios) {
    const title = scenarioTitle(report, scenario);
    const id = `scenario-${title.replace(/[^A-Za-z0-9_-]+/g, '_')}`;
    body.push(`<section id="${escapeHtml(id)}"><h2>Scenario ${escapeHtml(title)}</h2>`);
    body.push(`<p>${escapeHtml(scenarioSummary(report, scenario))}.</p>`);
    body.push(scenarioCharts(report, scenario, colour));
    body.push('<h3>Quality</h3><p class="note">Against the no-cache oracle, over the steps after the crossing; KL(oracle ‖ policy) in nats.</p>');
    body.push(htmlTable(qualityTable(report, scenario)));
    body.push(`<h3>Cost</h3><p class="note">Median of ${report.settings.repeats} repeats; ratios are to <code>stale</code>’s median step.</p>`);
    body.push(htmlTable(costTable(report, scenario)));
    if (report.settings.repeats > 1) {
      body.push('<p class="note">Spread over the repeats (min–max, ms):</p>', htmlTable(spreadTable(report, scenario)));
    }
    body.push(eventsList(report, scenario), '</section>');
  }

  if (report.serve && report.serve.length > 0) {
    body.push(
      '<section id="scenario-serve"><h2>Scenario serve</h2>',
      `<p>${escapeHtml(serveSummary(report))}.</p>`,
      '<h3>Throughput and time per output token</h3><p class="note">Tokens chosen by all sequences over the wall time; time per output token: the gaps between a sequence’s tokens, over every sequence. Batched beside solo.</p>',
      htmlTable(serveTable(report)),
      '<h3>Work</h3><p class="note">The batched side’s scheduler steps and prefix cache, and the tokens each side ran through the backend.</p>',
      htmlTable(serveWorkTable(report)),
      '</section>',
    );
  }

  if (report.targets.length > 0) {
    body.push('<section id="targets"><h2>Targets</h2>', htmlTable(targetsTable(report)), '</section>');
  }

  const details = runDetails(report)
    .map(([what, value]) => `<dt>${escapeHtml(what)}</dt><dd>${escapeHtml(value)}</dd>`)
    .join('');
  body.push(`<section id="run"><h2>Run</h2><dl>${details}</dl></section>`);

  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="color-scheme" content="light dark">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${CSS}</style>`,
    '</head>',
    '<body>',
    ...body,
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
