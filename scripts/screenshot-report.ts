// Renders a bench report to a PNG in headless Chromium, with the browser check's setup
// (test/support/headless-chromium.ts). For the README's screenshot:
//   npx tsx scripts/screenshot-report.ts bench-out/report.html --out docs/bench-report.png
// The input may be a report.html or a report.json (rendered with renderHtml first); `--sample`
// uses the tests' synthetic report instead. `--selector '#scenario-near'` shoots one section,
// `--full-page` the whole page (default: the first screen); `--dark` the dark colour scheme.
import { readFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchReport } from '../packages/cli/src/bench/bench-report.js';
import { renderHtml } from '../packages/cli/src/bench/report-html.js';
import { sampleBenchReport } from '../test/support/sample-bench-report.js';
import { chromiumMissing, launchChromium } from '../test/support/headless-chromium.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    out: { type: 'string', default: 'docs/bench-report.png' },
    sample: { type: 'boolean', default: false },
    selector: { type: 'string' },
    'full-page': { type: 'boolean', default: false },
    dark: { type: 'boolean', default: false },
    width: { type: 'string', default: '1280' },
    height: { type: 'string', default: '900' },
  },
});

const missing = chromiumMissing();
if (missing !== undefined) {
  console.error(missing);
  process.exit(1);
}
const input = positionals[0];
if (!values.sample && input === undefined) {
  console.error('usage: npx tsx scripts/screenshot-report.ts <report.html|report.json> [--out PNG] [--selector CSS] [--full-page] [--dark]   (or --sample)');
  process.exit(2);
}

const work = await mkdtemp(join(tmpdir(), 'ropeswitch-screenshot-'));
try {
  let htmlPath: string;
  if (values.sample || input!.endsWith('.json')) {
    const report: BenchReport = values.sample ? sampleBenchReport() : JSON.parse(await readFile(input!, 'utf8'));
    htmlPath = join(work, 'report.html');
    await writeFile(htmlPath, renderHtml(report));
  } else {
    htmlPath = resolve(input!);
  }
  const chromium = await launchChromium({ colorScheme: values.dark ? 'dark' : 'light', width: Number(values.width), height: Number(values.height) });
  try {
    const page = await chromium.context.newPage();
    await page.goto(pathToFileURL(htmlPath).href);
    const out = resolve(values.out!);
    if (values.selector !== undefined) await page.locator(values.selector).first().screenshot({ path: out });
    else await page.screenshot({ path: out, fullPage: values['full-page'] });
    console.log(`${out} (${chromium.browser.version()})`);
  } finally {
    await chromium.close();
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
