// The bench report renderers on a synthetic report: report.md (task table first, every run, nulls
// and targets) and report.html (self-contained, one chart per scenario and metric with one line per
// policy, everything from the report escaped, long series thinned).
import { describe, expect, it } from 'vitest';
import { renderHtml } from '../packages/cli/src/bench/report-html.js';
import { renderMarkdown } from '../packages/cli/src/bench/report-markdown.js';
import { SAMPLE_POLICIES, sampleBenchReport } from './support/sample-bench-report.js';

/** The markdown table (header + rows, split into trimmed cells) that follows `heading`'s first table line. */
function tableAfter(markdown: string, heading: string, nth = 0): string[][] {
  const start = markdown.indexOf(heading);
  expect(start, `heading ${heading}`).toBeGreaterThanOrEqual(0);
  const lines = markdown.slice(start).split('\n');
  const tables: string[][][] = [];
  let current: string[][] | undefined;
  for (const line of lines) {
    if (line.startsWith('|')) {
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim());
      if (!/^[-:|\s]+$/.test(line)) (current ??= []).push(cells);
    } else if (current !== undefined) {
      tables.push(current);
      current = undefined;
      if (tables.length > nth) break;
    }
  }
  if (current !== undefined) tables.push(current);
  const table = tables[nth];
  expect(table, `table ${nth} after ${heading}`).toBeDefined();
  return table!;
}

function column(table: string[][], title: string): string[] {
  const i = table[0]!.indexOf(title);
  expect(i, `column ${title} in ${table[0]!.join(', ')}`).toBeGreaterThanOrEqual(0);
  return table.slice(1).map((row) => row[i]!);
}

/** Each `<svg>…</svg>` of the page. */
function charts(html: string): string[] {
  return [...html.matchAll(/<svg\b[\s\S]*?<\/svg>/g)].map((m) => m[0]);
}

function seriesPaths(svg: string): { name: string; d: string }[] {
  return [...svg.matchAll(/<path class="series[^"]*" data-series="([^"]*)"[^>]*\bd="([^"]*)"/g)].map((m) => ({ name: m[1]!, d: m[2]! }));
}

describe('renderMarkdown', () => {
  const report = sampleBenchReport();
  const md = renderMarkdown(report);

  it('puts the copy-task table first, with HF figures beside ours', () => {
    const firstTable = md.split('\n').find((line) => line.startsWith('|'));
    expect(firstTable).toContain('token acc');
    expect(firstTable).toContain('HF token acc');
    expect(md.indexOf('## Copy task')).toBeLessThan(md.indexOf('## Scenario near'));
    const task = tableAfter(md, '## Copy task');
    expect(task).toHaveLength(1 + report.task.length);
    // n = 50, stale: ours 27.2%, HF 27.6% (eval.json's b_stale).
    const stale50 = task.find((row) => row[0] === '50' && row[3] === 'stale')!;
    expect(stale50[4]).toBe('27.2%');
    expect(stale50[5]).toBe('27.6%');
    // A policy HF has no counterpart for shows a dash there.
    expect(task.find((row) => row[0] === '50' && row[3] === 'rerotate')![5]).toBe('–');
  });

  it('has a quality row and a cost row for every (backend, policy) in every scenario', () => {
    for (const scenario of ['near', 'far']) {
      const heading = `## Scenario ${scenario}`;
      const quality = tableAfter(md, heading, 0);
      const cost = tableAfter(md, heading, 1);
      expect(quality[0]).toEqual(['backend', 'policy', 'max \\|Δlogit\\|', 'mean KL', 'max KL', 'top-1 agree', 'steps compared']);
      expect(cost[0]).toContain('crossing ratio');
      expect(cost[0]).toContain('peak cache');
      expect(quality.slice(1).map((row) => row[1])).toEqual([...SAMPLE_POLICIES]);
      expect(cost.slice(1).map((row) => row[1])).toEqual([...SAMPLE_POLICIES]);
    }
  });

  it('formats numbers for reading: KL in exponent form when tiny, ratios with 2 decimals, cache in MiB', () => {
    const quality = tableAfter(md, '## Scenario near', 0);
    const cost = tableAfter(md, '## Scenario near', 1);
    const meanKl = column(quality, 'mean KL');
    expect(meanKl[SAMPLE_POLICIES.indexOf('re-prefill')]).toMatch(/^\d\.\de-1\d$/);
    expect(meanKl[SAMPLE_POLICIES.indexOf('stale')]).toMatch(/^0\.\d{3}$/);
    expect(column(cost, 'crossing ratio')[SAMPLE_POLICIES.indexOf('shadow-prefill')]).toMatch(/^\d\.\d\d$/);
    expect(column(cost, 'peak cache')[0]).toMatch(/^\d\.\d\d MiB$/);
    expect(column(cost, 'median step ms')[0]).toMatch(/^\d\.\d\d$/);
  });

  it('lists the targets with ✓, ✗ and – for one not measured', () => {
    const targets = tableAfter(md, '## Targets');
    expect(column(targets, 'met')).toEqual(['✓', '✗', '✓', '–']);
    expect(column(targets, 'value')[3]).toBe('–');
    expect(column(targets, 'compared with')[0]).toMatch(/^re-prefill \d+$/);
    expect(md.indexOf('## Targets')).toBeLessThan(md.indexOf('## Run'));
  });

  it('shows – for null crossing values', () => {
    const cost = tableAfter(renderMarkdown(sampleBenchReport({ nullCrossing: true })), '## Scenario near', 1);
    for (const title of ['crossing step ms', 'crossing ratio', 'max step ratio']) {
      expect(new Set(column(cost, title))).toEqual(new Set(['–']));
    }
  });

  it('keeps a model name with pipes and newlines inside its cell', () => {
    const out = renderMarkdown(sampleBenchReport({ modelName: 'models/a|b\nc' }));
    expect(out).toContain('- model: models/a\\|b c');
  });

  it('renders a single-policy report', () => {
    const out = renderMarkdown(sampleBenchReport({ policies: ['re-prefill'] }));
    expect(tableAfter(out, '## Scenario far', 1).slice(1).map((row) => row[1])).toEqual(['re-prefill']);
  });
});

describe('renderHtml', () => {
  const report = sampleBenchReport();
  const html = renderHtml(report);

  it('is one well-formed page', () => {
    expect(html.startsWith('<!doctype html>\n<html lang="en">')).toBe(true);
    expect(html.trimEnd().endsWith('</html>')).toBe(true);
    for (const tag of ['html', 'head', 'body', 'style', 'section', 'figure', 'svg', 'table', 'thead', 'tbody', 'tr', 'ul', 'g', 'text']) {
      const open = html.match(new RegExp(`<${tag}[\\s>]`, 'g'))?.length ?? 0;
      const close = html.match(new RegExp(`</${tag}>`, 'g'))?.length ?? 0;
      expect(close, `<${tag}> opened ${open} times, closed ${close}`).toBe(open);
    }
  });

  it('references nothing outside the file: no scripts, links, images, fonts or URLs', () => {
    expect(html).not.toMatch(/https?:/i);
    expect(html).not.toMatch(/\bsrc\s*=/i);
    expect(html).not.toMatch(/\bhref\s*=/i);
    expect(html).not.toMatch(/url\(/i);
    expect(html).not.toMatch(/@import|@font-face/i);
    expect(html).not.toMatch(/<(script|link|img|iframe|object|embed)\b/i);
  });

  it('draws one chart per scenario and metric, one non-empty path per policy, the crossing marked', () => {
    const svgs = charts(html);
    expect(svgs).toHaveLength(report.scenarios.length * 2);
    for (const svg of svgs) {
      const paths = seriesPaths(svg);
      expect(paths.map((p) => p.name)).toEqual([...SAMPLE_POLICIES]);
      for (const p of paths) expect(p.d).toMatch(/^M\d/);
      expect(new Set(svg.match(/class="series s\d"/g)).size).toBe(SAMPLE_POLICIES.length);
      expect(svg).toMatch(/<g class="crossing"><line [^>]+\/><text[^>]*>crossing · step \d+<\/text><\/g>/);
    }
    expect(html).toContain('crossing · step 7');
    expect(html).toContain('crossing · step 2049');
  });

  it('has the tables of report.md', () => {
    expect(html.match(/<table>/g)).toHaveLength(1 + report.scenarios.length * 3 + 1); // task, quality/cost/spread per scenario, targets
    expect(html).toContain('<td class="c ok">✓</td>');
    expect(html).toContain('<td class="c bad">✗</td>');
    expect(html.indexOf('id="task"')).toBeLessThan(html.indexOf('id="scenario-near"'));
  });

  it('escapes every string from the report', () => {
    const hostile = sampleBenchReport({ modelName: '<script>alert(1)</script>"\'&', policies: ['stale', '<img src=x onerror=alert(1)>'] });
    const out = renderHtml(hostile);
    expect(out).not.toMatch(/<script|<img/i);
    expect(out).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;');
    expect(out).toContain('data-series="&lt;img src=x onerror=alert(1)&gt;"');
  });

  it('handles a single policy and null crossing values', () => {
    const single = renderHtml(sampleBenchReport({ policies: ['rerotate'], nullCrossing: true }));
    const svgs = charts(single);
    expect(svgs).toHaveLength(4);
    for (const svg of svgs) expect(seriesPaths(svg).map((p) => p.name)).toEqual(['rerotate']);
    // The scenario still crosses L (the marker stays); the run's crossing figures are dashes.
    expect(single).toContain('crossing · step 7');
    expect(single.match(/<td class="r">–<\/td>/g)!.length).toBeGreaterThanOrEqual(2 * 3);
  });

  it('thins long series for drawing but keeps their spikes, so the file stays small', () => {
    const long = sampleBenchReport({ farSteps: 20_000 });
    const out = renderHtml(long);
    expect(out.length).toBeLessThan(250_000);
    const far = charts(out)[3]!; // far, latency
    for (const { name, d } of seriesPaths(far)) {
      const pairs = d.split('M')[1]!.trim().split(' ').length / 2;
      expect(pairs, name).toBeLessThanOrEqual(2 * 330);
    }
    // re-prefill's crossing step is the highest point of its line, and of the chart.
    const ys = (d: string) => d.slice(1).split(' ').filter((_, i) => i % 2 === 1).map(Number);
    const byName = Object.fromEntries(seriesPaths(far).map((p) => [p.name, Math.min(...ys(p.d))]));
    expect(byName['re-prefill']).toBeLessThan(Math.min(...Object.values(byName).filter((y) => y !== byName['re-prefill'])));
  });
});
