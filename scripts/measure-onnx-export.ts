// Exporting a real-size checkpoint to onnxruntime, reopening the cached export, and decoding at a
// long cache, each in a fresh process so every peak RSS is that step's own. A measurement, not a
// test (minutes and many GB for a 32-layer model: run it alone on the machine):
//   npx tsx scripts/measure-onnx-export.ts --model DIR [--quantize int4|int8] [--cache-dir DIR]
//     [--accuracy-level 0|4] [--no-arena] [--threads 2] [--cache 4096] [--decode 8] [--prefill-chunk 256] [--steps export,reopen,decode]
//     [--cache-dtypes float32,float16] [--prepack yes|no]
//
// - export: `OnnxRuntimeBackend.open` on an empty cache folder (stream the checkpoint into
//   model.onnx + model.onnx.data, then load the session); the export part ends at the 'load' progress event.
// - reopen: the same open on the cached export (`checkpointDir` given: the key is the files'
//   identity, the entry is checked by its manifest, then the session loads). Target: ≤ 10 % of export.
// - decode: reopen, prefill `--cache` − `--decode` tokens into a cache reserved for exactly `--cache`
//   rows (as `Session`'s planned length does), then `--decode` steps up to it; ms/step and peak RSS.
// - reopen also times the first forward (one token on an empty cache): without prepacking the
//   session maps the weights and that forward is the first to read them.
// - `--prepack`: `prepackWeights` (default: the backend's, yes).
// - `--cache-dtypes`: the steps run once per KV cache element type (`cacheDtype`; default float32
//   only), in that order; a float16 cache is another export (its graph takes float16 caches).
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quantize: { type: 'string' },
    'cache-dir': { type: 'string' },
    threads: { type: 'string' },
    cache: { type: 'string' },
    decode: { type: 'string' },
    'prefill-chunk': { type: 'string' },
    steps: { type: 'string' },
    'accuracy-level': { type: 'string' },
    'no-arena': { type: 'boolean' },
    'cache-dtypes': { type: 'string' },
    'cache-dtype': { type: 'string' },
    prepack: { type: 'string' },
    child: { type: 'string' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const model = values.model;
const quantize = values.quantize as 'int4' | 'int8' | undefined;
const threads = Number(values.threads ?? 2);
const cacheRows = Number(values.cache ?? 4096);
const decodeSteps = Number(values.decode ?? 8);
const prefillChunk = Number(values['prefill-chunk'] ?? 256);
const cacheDtype = (values['cache-dtype'] ?? 'float32') as 'float32' | 'float16';
const prepack = values.prepack === undefined ? undefined : values.prepack === 'yes';
const accuracyLevel = values['accuracy-level'] === undefined ? undefined : (Number(values['accuracy-level']) as 0 | 1 | 2 | 3 | 4);

/** Peak and current RSS in GB, and the current one's anonymous and file-backed (mapped weights) parts (Linux `/proc/self/status`). */
function rss(): { peak: number; now: number; anon: number; file: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { peak: kb('VmHWM') / 1e6, now: kb('VmRSS') / 1e6, anon: kb('RssAnon') / 1e6, file: kb('RssFile') / 1e6 };
}

/** One step, in this (child) process; prints one JSON line. */
async function child(step: string, cacheDir: string): Promise<void> {
  const { config, weights } = await loadCheckpoint(model);
  const t0 = performance.now();
  let loadAt = 0;
  let exportPeak = 0;
  const backend = await OnnxRuntimeBackend.open(config, weights, {
    cacheDir,
    checkpointDir: model,
    threads,
    prefillChunk,
    cacheDtype,
    ...(quantize ? { quantize } : {}),
    ...(accuracyLevel !== undefined ? { accuracyLevel } : {}),
    ...(prepack !== undefined ? { prepackWeights: prepack } : {}),
    ...(values['no-arena'] ? { sessionOptions: { enableCpuMemArena: false } } : {}),
    onProgress: (p) => {
      if (p.phase !== 'load') return;
      loadAt = performance.now();
      exportPeak = rss().peak; // the peak so far: the export's own, before onnxruntime loads anything
    },
  });
  const openS = (performance.now() - t0) / 1000;
  await weights.close();
  const out: Record<string, unknown> = {
    step,
    created: backend.exported.created,
    openS,
    beforeLoadS: (loadAt - t0) / 1000,
    loadS: (performance.now() - loadAt) / 1000,
    dataGB: backend.exported.manifest.files.data.bytes / 1e9,
    peakRssBeforeLoadGB: exportPeak,
    rssAfterOpen: rss(),
  };
  if (step === 'reopen') {
    const cache = backend.createCache();
    const t = performance.now();
    await backend.forward({ rows: [{ tokens: [1], positions: [0], cache, regime: createRopeSchedule(config.rope).regimeFor(1) }] });
    out.firstForwardS = (performance.now() - t) / 1000;
    cache.dispose();
  }
  if (step === 'decode') {
    const schedule = createRopeSchedule(config.rope);
    const cache = backend.createCache();
    cache.reserve(cacheRows);
    const prompt = Array.from({ length: cacheRows - decodeSteps }, (_, i) => (i * 31 + 7) % config.vocabSize);
    const regime = schedule.regimeFor(cacheRows);
    let t = performance.now();
    await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache, regime }] });
    out.prefillTokPerS = (prompt.length / (performance.now() - t)) * 1000;
    out.rssAfterPrefill = rss();
    const steps: number[] = [];
    for (let i = 0; i < decodeSteps; i++) {
      t = performance.now();
      await backend.forward({ rows: [{ tokens: [(i * 13) % config.vocabSize], positions: [cache.length], cache, regime }] });
      steps.push(performance.now() - t);
    }
    steps.sort((a, b) => a - b);
    out.decodeMs = steps[steps.length >> 1];
    out.cacheRows = `${cache.length} of ${cache.capacity}`;
    out.cacheGB = cache.byteLength / 1e9;
    out.rssAfterDecode = rss();
    cache.dispose();
  }
  out.peakRssGB = rss().peak;
  await backend.dispose();
  console.log(JSON.stringify(out));
}

if (values.child) {
  await child(values.child, values['cache-dir']!);
} else {
  const cacheDir = values['cache-dir'] ?? mkdtempSync(join(tmpdir(), 'ropeswitch-export-'));
  const stepNames = (values.steps ?? 'export,reopen,decode').split(',');
  const dtypes = (values['cache-dtypes'] ?? 'float32').split(',');
  const steps = dtypes.flatMap((dtype) => stepNames.map((step) => ({ step, dtype })));
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}; model ${model}, weights ${quantize ?? 'float32'}${accuracyLevel !== undefined ? ` (accuracy level ${accuracyLevel})` : ''}, prefill chunk ${prefillChunk}, threads ${threads}, cache folder ${cacheDir}`);
  const script = fileURLToPath(import.meta.url);
  const results: Record<string, Record<string, unknown>> = {};
  for (const { step, dtype } of steps) {
    const args = ['--import', 'tsx', script, ...process.argv.slice(2), '--child', step, '--cache-dir', cacheDir, '--cache-dtype', dtype];
    const line = execFileSync(process.execPath, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 }).trim().split('\n').at(-1)!;
    results[dtypes.length > 1 ? `${step}, ${dtype} cache` : step] = JSON.parse(line);
    console.log(line);
  }
  const fmt = (r: Record<string, unknown> | undefined, k: string, d = 1) => (typeof r?.[k] === 'number' ? (r[k] as number).toFixed(d) : '—');
  console.log('\n| step | open s | of which before the session load | session load s | peak RSS GB before the load | peak RSS GB | RSS GB after decode | KV cache GB | prefill tok/s | decode ms/step |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [step, r] of Object.entries(results)) {
    const after = r.rssAfterDecode as { now: number } | undefined;
    console.log(`| ${step}${r.created ? ' (exported)' : ''} | ${fmt(r, 'openS')} | ${fmt(r, 'beforeLoadS')} | ${fmt(r, 'loadS')} | ${fmt(r, 'peakRssBeforeLoadGB', 2)} | ${fmt(r, 'peakRssGB', 2)} | ${after ? after.now.toFixed(2) : '—'} | ${fmt(r, 'cacheGB', 2)} | ${fmt(r, 'prefillTokPerS', 0)} | ${fmt(r, 'decodeMs')} |`);
  }
  const { export: exported, reopen } = results;
  if (exported && reopen) {
    const first = reopen.firstForwardS as number;
    const ratio = (s: number) => (s / (exported.openS as number)).toFixed(3);
    console.log(`\nreopen ÷ export = ${ratio(reopen.openS as number)} (target ≤ 0.10); with the first forward (${first.toFixed(2)} s): ${ratio((reopen.openS as number) + first)}`);
  }
}
