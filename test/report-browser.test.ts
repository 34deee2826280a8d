// The browser check: report.html, written to disk as the bench writes it, opened from file:// in
// headless Chromium (Debian's package, driven by playwright-core, offline). Asserts that the charts
// really drew (SVG geometry, computed colours), that the page asked for nothing beyond itself, that
// dark mode applies, and that a screenshot comes out as a real PNG. Skipped, with the reason
// printed, only where /usr/bin/chromium is missing (.ci/run installs it).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderHtml } from '../packages/cli/src/bench/report-html.js';
import { chromiumMissing, launchChromium, type HeadlessChromium } from './support/headless-chromium.js';
import { SAMPLE_POLICIES, sampleBenchReport } from './support/sample-bench-report.js';

const missing = chromiumMissing();
if (missing !== undefined) console.warn(`[report-browser] skipped: ${missing}`);

/** The little of the DOM the in-page callbacks use: the project compiles without the DOM lib. */
interface PageDom {
  document: { body: unknown; querySelector(selector: string): unknown };
  getComputedStyle(element: unknown): { stroke: string; display: string; backgroundColor: string; color: string };
}
interface SvgPath {
  getBBox(): { width: number; height: number };
  getAttribute(name: string): string | null;
  readonly dataset: Record<string, string | undefined>;
}

interface DrawnChart {
  label: string;
  series: { name: string; d: string; width: number; height: number; stroke: string; display: string }[];
  crossingLines: number;
  crossingText: string;
  ticks: number;
  box: { width: number; height: number };
}

describe.skipIf(missing !== undefined)('report.html in headless Chromium', () => {
  let dir: string;
  let htmlPath: string;
  let chromium: HeadlessChromium;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ropeswitch-report-browser-'));
    htmlPath = join(dir, 'report.html');
    await writeFile(htmlPath, renderHtml(sampleBenchReport()));
    chromium = await launchChromium();
  });

  afterAll(async () => {
    await chromium?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('draws every chart: one visible path per policy with geometry, distinct colours, axes, the crossing marked', async () => {
    const page = await chromium.context.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('request', (r) => requests.push(r.url()));
    const url = pathToFileURL(htmlPath).href;
    await page.goto(url);

    const drawn: DrawnChart[] = await page.$$eval('svg.chart', (svgs) =>
      svgs.map((svg) => {
        const { getComputedStyle } = globalThis as unknown as PageDom;
        const rect = svg.getBoundingClientRect();
        return {
          label: svg.getAttribute('aria-label') ?? '',
          series: [...svg.querySelectorAll('path.series')].map((element) => {
            const p = element as unknown as SvgPath;
            const box = p.getBBox();
            const style = getComputedStyle(p);
            return { name: p.dataset.series ?? '', d: p.getAttribute('d') ?? '', width: box.width, height: box.height, stroke: style.stroke, display: style.display };
          }),
          crossingLines: svg.querySelectorAll('g.crossing line').length,
          crossingText: svg.querySelector('g.crossing text')?.textContent ?? '',
          ticks: svg.querySelectorAll('text.tick').length,
          box: { width: rect.width, height: rect.height },
        };
      }),
    );

    expect(drawn.map((c) => c.label)).toEqual([
      'KL(oracle ‖ policy) per step, scenario near',
      'Step time per decode step, scenario near',
      'KL(oracle ‖ policy) per step, scenario far',
      'Step time per decode step, scenario far',
    ]);
    for (const chart of drawn) {
      expect(chart.box.width, chart.label).toBeGreaterThan(300);
      expect(chart.box.height, chart.label).toBeGreaterThan(100);
      expect(chart.series.map((s) => s.name), chart.label).toEqual([...SAMPLE_POLICIES]);
      for (const s of chart.series) {
        expect(s.d.length, `${chart.label}: ${s.name}`).toBeGreaterThan(10);
        // Every series spans many steps, so its box has width; an exact policy's KL lies flat on the floor (height 0).
        expect(s.width, `${chart.label}: ${s.name} bbox width`).toBeGreaterThan(100);
        expect(s.display).not.toBe('none');
        expect(s.stroke, `${chart.label}: ${s.name} stroke`).toMatch(/^rgb\(/);
      }
      expect(new Set(chart.series.map((s) => s.stroke)).size, `${chart.label}: distinct colours`).toBe(SAMPLE_POLICIES.length);
      expect(chart.crossingLines, chart.label).toBe(1);
      expect(chart.crossingText).toMatch(/^crossing · step \d+$/);
      expect(chart.ticks, chart.label).toBeGreaterThanOrEqual(6);
    }
    expect(requests).toEqual([url]);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('follows the dark colour scheme', async () => {
    const page = await chromium.context.newPage();
    await page.goto(pathToFileURL(htmlPath).href);
    const colours = async () =>
      page.evaluate(() => {
        const { document, getComputedStyle } = globalThis as unknown as PageDom;
        const body = getComputedStyle(document.body);
        const stroke = getComputedStyle(document.querySelector('path.series')).stroke;
        return { background: body.backgroundColor, text: body.color, stroke };
      });
    const light = await colours();
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await colours();
    const luminance = (rgb: string) => {
      const [r, g, b] = rgb.match(/\d+/g)!.map(Number);
      return (0.2126 * r! + 0.7152 * g! + 0.0722 * b!) / 255;
    };
    expect(luminance(light.background)).toBeGreaterThan(0.9);
    expect(luminance(light.text)).toBeLessThan(0.3);
    expect(luminance(dark.background)).toBeLessThan(0.1);
    expect(luminance(dark.text)).toBeGreaterThan(0.7);
    expect(dark.stroke).not.toBe(light.stroke);
    await page.close();
  });

  it('takes a screenshot that is a real, non-trivial PNG', async () => {
    const page = await chromium.context.newPage();
    await page.goto(pathToFileURL(htmlPath).href);
    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = await readFile(shot);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.subarray(12, 16).toString('latin1')).toBe('IHDR');
    const width = png.readUInt32BE(16);
    const height = png.readUInt32BE(20);
    expect(width).toBe(1280);
    expect(height).toBeGreaterThan(1500); // the whole report, not one blank screen
    expect(png.length).toBeGreaterThan(50_000);
    await page.close();
  });
});
