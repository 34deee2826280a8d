// The WebGPU browser check: examples/webgpu-browser built with Vite, served from 127.0.0.1 (a
// secure context, which WebGPU requires), opened in headless Chromium (Debian's package, driven by
// playwright-core). `--enable-unsafe-webgpu` gives Chromium's built-in SwiftShader adapter on a
// machine without a GPU, even with `--disable-gpu`. The page generates on WebGPU through a cache
// policy across the regime threshold and checks itself against the reference backend; this test
// reads its JSON result. Skipped, with the reason printed, only where /usr/bin/chromium is missing
// or it exposes no WebGPU adapter.
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { type Server, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PageResult } from '../examples/webgpu-browser/page-result.js';
import { CHROMIUM_ARGS, CHROMIUM_PATH, chromiumMissing } from './support/headless-chromium.js';

const exampleDir = fileURLToPath(new URL('../examples/webgpu-browser/', import.meta.url));

/** The project's headless flags plus the one WebGPU needs; `--disable-gpu` stays (SwiftShader needs no GPU process features). */
const WEBGPU_ARGS = [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'];

const missing = chromiumMissing();
if (missing !== undefined) console.warn(`[webgpu-browser] skipped: ${missing}`);

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
};

/** A static file server over `root` on 127.0.0.1, an ephemeral port. */
async function serve(root: string): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
    const file = join(root, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(root)) return void response.writeHead(403).end();
    stat(file).then(
      (s) => {
        if (!s.isFile()) return void response.writeHead(404).end();
        response.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': s.size });
        createReadStream(file).pipe(response);
      },
      () => void response.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}

describe.skipIf(missing !== undefined)('examples/webgpu-browser in headless Chromium (WebGPU)', () => {
  let outDir: string;
  let server: Server;
  let baseUrl: string;
  let browser: Browser;
  /** Why the page cannot run WebGPU here, or undefined. */
  let noAdapter: string | undefined;

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), 'ropeswitch-webgpu-browser-'));
    await build({ configFile: join(exampleDir, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true } });
    ({ server, url: baseUrl } = await serve(outDir));
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: WEBGPU_ARGS });
    const page = await browser.newPage();
    await page.goto(baseUrl + 'models/copy-longrope/config.json');
    noAdapter = await page.evaluate(async () => {
      const { navigator } = globalThis as unknown as { navigator: { gpu?: { requestAdapter(): Promise<unknown> } } };
      if (!navigator.gpu) return 'navigator.gpu is undefined';
      return (await navigator.gpu.requestAdapter()) === null ? 'navigator.gpu.requestAdapter() returned null' : undefined;
    });
    await page.close();
    if (noAdapter !== undefined) console.warn(`[webgpu-browser] skipped: Chromium exposes no WebGPU adapter (${noAdapter}) with flags ${WEBGPU_ARGS.join(' ')}`);
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    if (outDir !== undefined) await rm(outDir, { recursive: true, force: true });
  });

  /** Opens the page with `query`, waits for its JSON result; collects page errors and off-origin requests. */
  async function runPage(query: string): Promise<{ result: PageResult; problems: string[]; requests: string[] }> {
    const page: Page = await browser.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('request', (r) => requests.push(r.url()));
    try {
      await page.goto(`${baseUrl}index.html${query}`);
      await page.waitForFunction(() => (globalThis as unknown as { document: { getElementById(id: string): { textContent: string } | null } }).document.getElementById('result')?.textContent !== '', undefined, { timeout: 45_000 });
      const text = await page.locator('#result').textContent();
      return { result: JSON.parse(text ?? '') as PageResult, problems, requests };
    } finally {
      await page.close();
    }
  }

  // Both matmul kernel sets: `auto` (register-blocked on a software adapter) and `tiled` (workgroup memory and barriers).
  it.for([
    ['shadow-prefill', 'auto'],
    ['re-prefill', 'tiled'],
  ] as const)('%s, %s kernels: copies across the crossing on WebGPU, token for token as the reference backend in the same page', async ([policy, kernels], context) => {
    context.skip(noAdapter !== undefined, `Chromium exposes no WebGPU adapter: ${noAdapter}`);
    const { result, problems, requests } = await runPage(`?policy=${policy}&n=50&seed=7&kernels=${kernels}`);
    if (!result.ok) throw new Error(`page failed: ${result.error}`);
    console.log(
      `[webgpu-browser] ${policy} on ${result.adapter.vendor}/${result.adapter.architecture}${result.adapter.software ? ' (software)' : ''}, ${result.kernels} kernels: ` +
        `${result.copyCorrect}/${result.expected.length} copied, max |Δlogit| vs reference ${result.reference.maxLogitDiff.toExponential(2)}, ` +
        `WebGPU ${result.ms.webgpu.toFixed(0)} ms, reference ${result.ms.reference.toFixed(0)} ms`,
    );
    expect(result.policy).toBe(policy);
    expect(result.prompt).toHaveLength(52);
    expect(result.threshold).toBe(64);
    expect(result.crossingStep).toBe(13); // 52 + 13 = 65 = L + 1
    expect(result.tokens).toHaveLength(51);
    expect(result.adapter.vendor.length + result.adapter.architecture.length).toBeGreaterThan(0);
    expect(result.kernels).toBe(kernels === 'auto' ? (result.adapter.software ? 'register-blocked' : 'tiled') : kernels);

    // The crossing was handled: the policy reports its work at S = L + 1 (shadow-prefill swaps, re-prefill recomputes).
    const kind = policy === 'shadow-prefill' ? 'shadow-swap' : 're-prefill';
    const atCrossing = result.events.filter((e) => e.type === kind);
    expect(atCrossing).toHaveLength(1);
    expect(atCrossing[0]!.atLength).toBe(result.threshold + 1);
    if (policy === 'shadow-prefill') expect(result.events.some((e) => e.type === 'shadow-start' && e.atLength <= result.threshold)).toBe(true);

    // The reference backend, run in the page on the same weights, chose the same tokens; logits agree to float32 noise.
    expect(result.reference.tokens).toEqual(result.tokens);
    expect(result.reference.agree).toBe(true);
    expect(result.reference.maxLogitDiff).toBeLessThan(1e-2);
    // The trained model copies (HF: 198/200 exact at n = 50): a stale cache would fall to chance after step 13.
    expect(result.copyCorrect).toBeGreaterThanOrEqual(48);

    expect(problems).toEqual([]);
    expect(requests.every((url) => url.startsWith(baseUrl))).toBe(true);
  });
});
