// onnxruntime backend throughput against the reference backend, side by side in one run: prefill and
// decode tokens/s on the make-tiny default model and on a mid-size Phi-3 layout (hidden 512,
// 8 layers, 8 heads, head_dim 64, intermediate 1536, vocab 1024), plus the onnxruntime backend's
// zero-copy floor. A benchmark, not a test: run it with
//   npx tsx scripts/bench-onnxruntime.ts [--prompt 4096] [--decode 16] [--only tiny|mid] [--threads N]
//
// With --model DIR (a real-shape checkpoint, e.g. `ropeswitch make-model --like phi-3-mini-128k
// --layers 2 --out DIR`) it measures the onnxruntime backend alone on that model, each figure
// interleaved round by round so load changes hit all alike, with peak RSS:
//   npx tsx scripts/bench-onnxruntime.ts --model DIR [--prompt 256] [--decode 16] [--threads 2]
//     [--quantize int4|int8] [--shadow-chunk 3] [--cache-dir DIR] [--no-floor]
// - plain decode step (one row);
// - decode + shadow chunk: the decode row and a `--shadow-chunk`-token row over a second cache in
//   one forward (one session run), as shadowPrefill sends them: target ≤ 1.25× a plain step;
// - the same two rows as two forwards (what running rows one after another costs);
// - the zero-copy floor at the decode row's cache (target: decode ≤ 1.2× it).
//
// Zero-copy floor: the same exported decode graph, on the same cache storage (capacity and valid
// length), run directly through an onnxruntime session with feeds built once (no cos/sin tables, no
// tensor wrapping, no write-back of the new rows, no commit, no Session bookkeeping). It is what the ONNX graph itself costs; the
// backend's decode ÷ floor is the cost of everything the backend adds per step (target ≤ 1.2×).
// The weights floor (the same step at cache 16) is printed too: attention over the cache is the rest.
import { DecoderIo, OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeTinyModel, type TinyModelOptions } from '@ropeswitch/cli';
import { type Backend, type CpuKvCache, type ModelConfig, Session, createRopeSchedule, loadCheckpoint, rotaryTables } from '@ropeswitch/core';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';


const { values } = parseArgs({
  options: {
    prompt: { type: 'string' },
    decode: { type: 'string' },
    only: { type: 'string' },
    threads: { type: 'string' },
    model: { type: 'string' },
    quantize: { type: 'string' },
    'shadow-chunk': { type: 'string' },
    'cache-dir': { type: 'string' },
    'no-floor': { type: 'boolean' },
  },
});
const promptLength = Number(values.prompt ?? (values.model ? 256 : 4096));
const decodeSteps = Number(values.decode ?? 16);
const threads = values.threads === undefined ? undefined : Number(values.threads);

const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4/2 heads, vocab 128
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 },
};

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
type Feeds = Record<string, InstanceType<typeof ort.Tensor>>;

/**
 * Feeds of one decode step of the exported graph (`slots` row slots, only slot 0 used) at `valid`
 * cached rows, reading `cache`'s own storage (the zero-copy floor), or fresh zeros of capacity 16
 * (the weights floor).
 */
function floorFeeds(config: ModelConfig, slots: number, valid: number, cache: CpuKvCache | undefined): Feeds {
  const { numLayers, numKvHeads, headDim, rope } = config;
  const t = rotaryTables(createRopeSchedule(rope).regimeFor(valid + 1), [valid]);
  const feeds: Feeds = {
    [DecoderIo.inputIds]: new ort.Tensor('int64', BigInt64Array.of(5n), [1]),
    [DecoderIo.ropeCos]: new ort.Tensor('float32', t.cos, [1, t.half]),
    [DecoderIo.ropeSin]: new ort.Tensor('float32', t.sin, [1, t.half]),
    [DecoderIo.rowOffsets]: new ort.Tensor('int64', BigInt64Array.from({ length: slots + 1 }, (_, s) => (s === 0 ? 0n : 1n)), [slots + 1]),
    [DecoderIo.pastLengths]: new ort.Tensor('int64', BigInt64Array.from({ length: slots }, (_, s) => (s === 0 ? BigInt(valid) : 0n)), [slots]),
    [DecoderIo.logitsIndex]: new ort.Tensor('int64', BigInt64Array.of(0n), [1]),
  };
  const cap = cache?.capacity ?? 16;
  const empty = new ort.Tensor('float32', new Float32Array(numKvHeads * headDim), [numKvHeads, 1, headDim]);
  for (let l = 0; l < numLayers; l++) {
    feeds[DecoderIo.pastKey(l, 0)] = new ort.Tensor('float32', cache?.keys(l) ?? new Float32Array(numKvHeads * cap * headDim), [numKvHeads, cap, headDim]);
    feeds[DecoderIo.pastValue(l, 0)] = new ort.Tensor('float32', cache?.values(l) ?? new Float32Array(numKvHeads * cap * headDim), [numKvHeads, cap, headDim]);
    for (let s = 1; s < slots; s++) feeds[DecoderIo.pastKey(l, s)] = feeds[DecoderIo.pastValue(l, s)] = empty;
  }
  return feeds;
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}`);
if (values.model) {
  await benchModel(values.model);
  process.exit(0);
}
console.log(`prompt ${promptLength} tokens, then ${decodeSteps} decode steps (median ms/step); onnxruntime threads: ${threads ?? 'default'}`);
console.log('Decode steps of every backend and floor are interleaved (one of each per round), so load changes hit all alike.\n');
const table: string[] = [];
const ratios: string[] = [];
for (const [name, options] of Object.entries(models)) {
  if (values.only && values.only !== name) continue;
  const dir = await mkdtemp(join(tmpdir(), `ropeswitch-bench-ort-${name}-`));
  await makeTinyModel(dir, options);
  const { config, weights } = await loadCheckpoint(dir);
  const label = `${name} (h${config.hiddenSize}, ${config.numLayers}L)`;
  let t0 = performance.now();
  const onnx = await OnnxRuntimeBackend.open(config, weights, { ...(threads !== undefined ? { threads } : {}), cacheDir: dir });
  const exportS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await (await OnnxRuntimeBackend.open(config, weights, { cacheDir: dir })).dispose();
  const reopenS = (performance.now() - t0) / 1000;
  const backends: [string, Backend][] = [
    ['onnxruntime', onnx],
    ['reference (wasm)', new ReferenceBackend(config, weights, { kernels: 'wasm' })],
    ['reference (typescript)', new ReferenceBackend(config, weights, { kernels: 'typescript' })],
  ];
  await weights.close();
  const prompt = Array.from({ length: promptLength }, (_, i) => (i * 31 + 7) % config.vocabSize);
  const sessions = backends.map(([, b]) => new Session(b));
  const prefillMs: number[] = [];
  for (const s of sessions) prefillMs.push(await timed(() => s.forward(prompt)));
  // The floors run the same exported graph in a session of their own, on the onnxruntime session's cache.
  const floorSession = await ort.InferenceSession.create(onnx.exported.modelPath, {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
  });
  const ortCache = sessions[0]!.cache as CpuKvCache;
  ortCache.reserve(decodeSteps + 1); // the capacity every decode step of the onnxruntime session runs at
  const slots = onnx.exported.manifest.slots;
  const zeroCopy = floorFeeds(config, slots, promptLength, ortCache);
  const weightsOnly = floorFeeds(config, slots, 15, undefined);
  const stepMs: number[][] = backends.map(() => []);
  const floorMs: number[] = [];
  const weightsMs: number[] = [];
  for (let i = 0; i < decodeSteps; i++) {
    const token = (i * 13) % config.vocabSize;
    for (let b = 0; b < sessions.length; b++) stepMs[b]!.push(await timed(() => sessions[b]!.forward([token])));
    floorMs.push(await timed(() => floorSession.run(zeroCopy)));
    weightsMs.push(await timed(() => floorSession.run(weightsOnly)));
  }
  await floorSession.release();
  const decode = stepMs.map(median);
  const floor = median(floorMs);
  backends.forEach(([bname], b) => {
    const extra = b === 0 ? ` (export + open ${exportS.toFixed(1)} s, reopen from disk cache ${reopenS.toFixed(1)} s)` : '';
    table.push(`| ${label} | ${bname}${extra} | ${((promptLength / prefillMs[b]!) * 1000).toFixed(0)} | ${(1000 / decode[b]!).toFixed(1)} | ${decode[b]!.toFixed(2)} |`);
  });
  table.push(`| ${label} | onnxruntime zero-copy floor (graph only, cache ${promptLength} of ${ortCache.capacity}) | — | ${(1000 / floor).toFixed(1)} | ${floor.toFixed(2)} |`);
  table.push(`| ${label} | onnxruntime weights floor (graph only, cache 15 of 16) | — | ${(1000 / median(weightsMs)).toFixed(1)} | ${median(weightsMs).toFixed(2)} |`);
  ratios.push(`${label}: onnxruntime decode ÷ zero-copy floor = ${(decode[0]! / floor).toFixed(2)}×`);
  for (let b = 1; b < backends.length; b++) {
    ratios.push(
      `${label}: ${backends[b]![0]} ÷ onnxruntime tokens/s: decode ${(decode[0]! / decode[b]!).toFixed(2)}, prefill ${(prefillMs[0]! / prefillMs[b]!).toFixed(2)}`,
    );
  }
  for (const s of sessions) await s.dispose();
  for (const [, b] of backends) await b.dispose();
  await rm(dir, { recursive: true });
}
console.log('| model | backend | prefill tok/s | decode tok/s | decode ms/step |');
console.log('|---|---|---|---|---|');
for (const r of table) console.log(r);
console.log('');
for (const r of ratios) console.log(r);

/** Peak and current resident set of this process, in GB (Linux `/proc/self/status`). */
function rssGb(): { peak: number; now: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { peak: kb('VmHWM') / 1e6, now: kb('VmRSS') / 1e6 };
}

/** The --model mode: the onnxruntime backend on a real-shape checkpoint (see the header). */
async function benchModel(dir: string): Promise<void> {
  const quantize = values.quantize as 'int4' | 'int8' | undefined;
  const chunk = Number(values['shadow-chunk'] ?? 3);
  const cacheDir = values['cache-dir'] ?? tmpdir();
  const { config, weights } = await loadCheckpoint(dir);
  console.log(`model ${dir}: hidden ${config.hiddenSize}, ${config.numLayers} layers, ${config.numHeads}/${config.numKvHeads} heads, vocab ${config.vocabSize}; weights ${quantize ?? 'float32'}; threads ${threads ?? 'default'}`);
  let t0 = performance.now();
  const backend = await OnnxRuntimeBackend.open(config, weights, {
    cacheDir,
    checkpointDir: dir,
    ...(threads !== undefined ? { threads } : {}),
    ...(quantize ? { quantize } : {}),
  });
  const openS = (performance.now() - t0) / 1000;
  await weights.close();
  const m = backend.exported.manifest;
  console.log(
    `open: ${openS.toFixed(1)} s (${backend.exported.created ? 'exported now' : 'cached export'}; graph ${(m.files.model.bytes / 1e6).toFixed(1)} MB + data ${(m.files.data.bytes / 1e9).toFixed(2)} GB), RSS after open ${rssGb().now.toFixed(2)} GB`,
  );
  const schedule = createRopeSchedule(config.rope);
  const decodeCache = backend.createCache() as CpuKvCache;
  const shadowCache = backend.createCache() as CpuKvCache;
  decodeCache.reserve(promptLength + 3 * decodeSteps + 4);
  shadowCache.reserve(Math.ceil(promptLength / 2) + 2 * chunk * decodeSteps + chunk);
  const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 31 + seed) % config.vocabSize);
  const row = (cache: CpuKvCache, tokens: number[], regimeLength: number, logits: number) => ({
    tokens,
    positions: tokens.map((_, i) => cache.length + i),
    cache,
    regime: schedule.regimeFor(regimeLength),
    logits,
  });
  const longLength = (schedule.threshold ?? 0) + 1;
  t0 = performance.now();
  await backend.forward({ rows: [row(decodeCache, ids(promptLength, 7), promptLength, 1)] });
  const prefillMs = performance.now() - t0;
  await backend.forward({ rows: [row(shadowCache, ids(Math.ceil(promptLength / 2), 3), longLength, 0)] });
  const decodeRow = (i: number) => row(decodeCache, [(i * 13) % config.vocabSize], decodeCache.length + 1, 1);
  const shadowRow = (i: number) => row(shadowCache, ids(chunk, i), longLength, 0);
  let floorSession: Awaited<ReturnType<typeof ort.InferenceSession.create>> | undefined;
  let zeroCopy: Feeds | undefined;
  if (!values['no-floor']) {
    // The floor runs the same exported graph in a session of its own (its weights a second time in memory).
    floorSession = await ort.InferenceSession.create(backend.exported.modelPath, {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
    });
  }
  const plain: number[] = [];
  const batched: number[] = [];
  const serial: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < decodeSteps + 1; i++) {
    const p = await timed(() => backend.forward({ rows: [decodeRow(i)] }));
    const b = await timed(() => backend.forward({ rows: [decodeRow(i), shadowRow(i)] }));
    const s = await timed(async () => {
      await backend.forward({ rows: [decodeRow(i)] });
      await backend.forward({ rows: [shadowRow(i + 1)] });
    });
    let f = 0;
    if (floorSession) {
      zeroCopy = floorFeeds(config, m.slots, decodeCache.length, decodeCache);
      f = await timed(() => floorSession!.run(zeroCopy!));
    }
    // The first round warms up every path.
    if (i === 0) continue;
    plain.push(p);
    batched.push(b);
    serial.push(s);
    floor.push(f);
  }
  await floorSession?.release();
  const med = { plain: median(plain), batched: median(batched), serial: median(serial), floor: median(floor) };
  console.log(`prefill ${promptLength} tokens: ${prefillMs.toFixed(0)} ms (${((promptLength / prefillMs) * 1000).toFixed(0)} tok/s); decode cache ${decodeCache.length} of ${decodeCache.capacity} rows, shadow cache ${shadowCache.length} of ${shadowCache.capacity}`);
  console.log('| step (median of ' + plain.length + ' rounds) | ms | ÷ plain decode |');
  console.log('|---|---:|---:|');
  console.log(`| plain decode (1 row) | ${med.plain.toFixed(1)} | 1.00 |`);
  console.log(`| decode + ${chunk}-token shadow chunk, one forward | ${med.batched.toFixed(1)} | ${(med.batched / med.plain).toFixed(2)} (target ≤ 1.25) |`);
  console.log(`| the same rows as two forwards | ${med.serial.toFixed(1)} | ${(med.serial / med.plain).toFixed(2)} |`);
  if (floorSession) console.log(`| zero-copy floor (graph only, same cache) | ${med.floor.toFixed(1)} | ${(med.floor / med.plain).toFixed(2)} (decode ÷ floor = ${(med.plain / med.floor).toFixed(2)}, target ≤ 1.2) |`);
  const rss = rssGb();
  console.log(`peak RSS ${rss.peak.toFixed(2)} GB (caches ${((decodeCache.byteLength + shadowCache.byteLength) / 1e9).toFixed(2)} GB${floorSession ? '; includes the floor session\'s copy of the weights' : ''})`);
  decodeCache.dispose();
  shadowCache.dispose();
  await backend.dispose();
}
