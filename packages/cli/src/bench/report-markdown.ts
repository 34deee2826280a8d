/**
 * `report.md` (also what `ropeswitch bench` prints): the copy-task table first, then per scenario
 * the quality and cost of every (backend, policy), then the performance targets, then what ran where.
 */
import type { BenchReport } from './bench-report.js';
import {
  costTable,
  qualityTable,
  runDetails,
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

/**
 * Text safe inside a markdown table cell: pipes escaped, newlines flattened. Nothing else, so the
 * table still reads as plain text on a terminal (a model folder like `phi_3` stays as it is).
 */
function escapeMarkdown(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n|\r/g, ' ');
}

function markdownTable(table: ReportTable): string {
  const rule = table.columns.map((c) => (c.align === 'right' ? '---:' : c.align === 'center' ? ':---:' : '---'));
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [
    line(table.columns.map((c) => escapeMarkdown(c.title))),
    `|${rule.join('|')}|`,
    ...table.rows.map((row) => line(row.map(escapeMarkdown))),
  ].join('\n');
}

export function renderMarkdown(report: BenchReport): string {
  const out: string[] = [];
  out.push(`# ropeswitch bench: ${escapeMarkdown(report.model.name)}, L = ${report.threshold}`);

  if (report.task.length > 0) {
    out.push(
      '## Copy task on the trained model',
      'Copy accuracy per policy at copy lengths n whose copy crosses L; HF transformers 4.45 on the same kind of policy beside ours.',
      markdownTable(taskTable(report)),
    );
  }

  for (const scenario of report.scenarios) {
    out.push(`## Scenario ${escapeMarkdown(scenarioTitle(report, scenario))}`, `${scenarioSummary(report, scenario)}.`);
    out.push(
      '**Quality** against the no-cache oracle, over the steps after the crossing (KL(oracle ‖ policy) in nats):',
      markdownTable(qualityTable(report, scenario)),
    );
    out.push(
      `**Cost** (median of ${report.settings.repeats} repeats; ratios are to \`stale\`'s median step):`,
      markdownTable(costTable(report, scenario)),
    );
    if (report.settings.repeats > 1) {
      out.push('Spread over the repeats (min–max, ms):', markdownTable(spreadTable(report, scenario)));
    }
  }

  if (report.serve && report.serve.length > 0) {
    out.push(
      '## Scenario serve',
      `${serveSummary(report)}.`,
      '**Throughput** (tokens chosen by all sequences over the wall time) and **time per output token** (gaps between a sequence\'s tokens, over every sequence), batched beside solo:',
      markdownTable(serveTable(report)),
      '**Work** of the batched side (scheduler steps, prefix cache) and tokens each side ran through the backend:',
      markdownTable(serveWorkTable(report)),
    );
  }

  if (report.targets.length > 0) {
    out.push('## Targets', markdownTable(targetsTable(report)));
  }

  out.push('## Run', runDetails(report).map(([what, value]) => `- ${what}: ${escapeMarkdown(value)}`).join('\n'));
  return `${out.join('\n\n')}\n`;
}
