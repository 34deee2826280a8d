// WebGPU backend benchmark, next to the reference backend in the same run. Two modes:
//
// Default: a mid-size Phi-3 layout (hidden 512, 8 layers, 8 heads, head_dim 64, intermediate 1536,
// vocab 1024, random weights), both backends in this process: prefill tokens/s, decode step time at
// a few cache lengths, and the on-device key rerotation's bandwidth against a device-to-device
// copyBufferToBuffer of the same key rows (the issue's GPU target: ≥ 50% of copy bandwidth).
//   npx tsx scripts/bench-webgpu.ts [--quick] [--adapter auto|gpu|software] [--kernels auto|tiled|register-blocked]
//                                   [--prompt N] [--lengths 16,512,2048] [--steps N] [--no-reference]
//
// `--model DIR`: a real checkpoint (e.g. make-model's Phi-3-mini shape), each backend in a process
// of its own so its peak RSS is its own: load time (checkpoint to a backend ready to run), prefill
// tokens/s, decode step time at each cache length, peak RSS, and how far the webgpu logits are from
// the reference's (the prompt's last position and the first decode step).
//   npx tsx scripts/bench-webgpu.ts --model DIR [--adapter …] [--kernels …] [--prompt 256] [--lengths 256,4096] [--steps 5]
// Decode past the prompt runs over a cache filled by commit() without a forward (a 4096-token
// prefill takes minutes on a CPU): a step costs the same whatever the cached values are.
//
// Timings are wall-clock from submission to completion (median of repeats); compare within one run.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { GpuKvCache, type KernelSetName, WebGpuBackend } from '@ropeswitch/backend-webgpu';
import { createNodeWebGpuBackend, requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import { makeTinyModel } from '@ropeswitch/cli';
import { type Backend, type KvCache, LongRopeSchedule, type RecordedKvCache, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    adapter: { type: 'string' },
    kernels: { type: 'string' },
    prompt: { type: 'string' },
    lengths: { type: 'string' },
    steps: { type: 'string' },
    'no-reference': { type: 'boolean' },
    model: { type: 'string' },
    child: { type: 'string' },
  },
});
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const machine = `${cpus()[0]?.model.trim() ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`;
/** The backends `--model` compares, each in a process of its own. */
const BACKENDS = ['webgpu', 'reference'] as const;

if (values.model !== undefined) {
  await (values.child !== undefined ? benchCheckpointChild(values.model, values.child) : benchCheckpoint(values.model));
  process.exit(0);
}

const quick = values.quick === true;
const { device, adapterDescription, software } = await requestNodeGpuDevice({ adapter: (values.adapter ?? 'auto') as 'auto' | 'gpu' | 'software' });
// The software adapter is slow: smaller defaults there (every number stays overridable).
const small = quick || software;
const promptLength = Number(values.prompt ?? (small ? 256 : 4096));
const lengths = (values.lengths ?? (quick ? '16,256' : software ? '16,512,2048' : '16,1024,4096')).split(',').map(Number);
const steps = Number(values.steps ?? (small ? 5 : 20));
const withReference = values['no-reference'] !== true;

console.log(`machine: ${machine}`);
console.log(`adapter: ${adapterDescription}`);

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-bench-webgpu-'));
await makeTinyModel(dir, { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024, originalMax: 4096, maxPositions: 131072 });
const { config, weights } = await loadCheckpoint(dir);
const gpu = await WebGpuBackend.create(config, weights, { device, kernels: (values.kernels ?? 'auto') as KernelSetName | 'auto', adapterDescription, software });
const ref = withReference ? new ReferenceBackend(config, weights) : undefined;
await weights.close();
await rm(dir, { recursive: true });
console.log(`backend: ${gpu.deviceDescription}; weights ${(gpu.weightBytes / 2 ** 20).toFixed(0)} MiB on the device`);
const schedule = createRopeSchedule(config.rope) as LongRopeSchedule;
const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ((from + i) * 31 + 7) % config.vocabSize);

async function extend(backend: Backend, cache: KvCache, count: number): Promise<number> {
  const from = cache.length;
  const t0 = performance.now();
  await backend.forward({ rows: [{ tokens: ids(count, from), positions: Int32Array.from({ length: count }, (_, i) => from + i), cache, regime: schedule.short }] });
  return performance.now() - t0;
}

// ---- prefill
console.log(`\n## prefill, ${promptLength} tokens in one forward\n`);
console.log('| backend | ms | tokens/s | vs reference |');
console.log('|---|---|---|---|');
const prefill: Record<string, number> = {};
for (const [name, backend] of [['webgpu', gpu], ['reference', ref]] as const) {
  if (!backend) continue;
  const cache = backend.createCache();
  if (name === 'webgpu') await extend(backend, backend.createCache(), 8); // warm-up: pipelines, first allocations
  prefill[name] = await extend(backend, cache, promptLength);
  cache.dispose();
}
for (const name of Object.keys(prefill)) {
  const ms = prefill[name]!;
  const ratio = prefill['reference'] ? `${(prefill['reference'] / ms).toFixed(2)}×` : '—';
  console.log(`| ${name} | ${ms.toFixed(0)} | ${((promptLength / ms) * 1000).toFixed(0)} | ${name === 'webgpu' ? ratio : '1.00×'} |`);
}

// ---- decode
console.log(`\n## decode step (1 token, logits read back), median of ${steps}\n`);
console.log('| cache length | webgpu ms/step | reference ms/step | reference / webgpu |');
console.log('|---|---|---|---|');
const caches = { webgpu: gpu.createCache(), reference: ref?.createCache() };
caches.webgpu.reserve(Math.max(...lengths) + lengths.length * (steps + 1));
for (const length of lengths) {
  const row: Record<string, number> = {};
  for (const [name, backend] of [['webgpu', gpu], ['reference', ref]] as const) {
    const cache = caches[name];
    if (!backend || !cache) continue;
    if (cache.length < length) await extend(backend, cache, length - cache.length);
    const times: number[] = [];
    for (let s = 0; s < steps; s++) times.push(await extend(backend, cache, 1));
    row[name] = median(times);
  }
  const r = row['reference'];
  console.log(`| ${length} | ${row['webgpu']!.toFixed(2)} | ${r?.toFixed(2) ?? '—'} | ${r ? `${(r / row['webgpu']!).toFixed(2)}×` : '—'} |`);
}
caches.reference?.dispose();

// ---- rerotation vs copy, on the webgpu cache just used (all layers' keys)
const cache = caches.webgpu as GpuKvCache;
const n = cache.length;
const { numLayers, numKvHeads, headDim } = cache.layout;
const keyBytes = numLayers * numKvHeads * n * headDim * 4;
const queue = device.queue;
const repeats = small ? 5 : 20;
const rotateTimes: number[] = [];
await gpu.prepareRerotation(schedule.short, schedule.long, n);
await gpu.prepareRerotation(schedule.long, schedule.short, n);
let to = schedule.long;
await gpu.rerotateKeys(cache, to); // warm-up
await queue.onSubmittedWorkDone();
for (let i = 0; i < repeats; i++) {
  to = to === schedule.long ? schedule.short : schedule.long;
  const t0 = performance.now();
  await gpu.rerotateKeys(cache, to);
  await queue.onSubmittedWorkDone();
  rotateTimes.push(performance.now() - t0);
}
const scratch = Array.from({ length: numLayers }, () => device.createBuffer({ size: numKvHeads * cache.capacity * headDim * 4, usage: 0x0008 /* COPY_DST */ }));
const copyTimes: number[] = [];
for (let i = 0; i <= repeats; i++) {
  const t0 = performance.now();
  const encoder = device.createCommandEncoder();
  for (let l = 0; l < numLayers; l++) {
    for (const block of cache.keys(l)) {
      for (let h = 0; h < block.heads; h++) {
        const at = h * cache.capacity * headDim * 4;
        encoder.copyBufferToBuffer(block.buffer, at, scratch[l]!, (block.firstHead + h) * cache.capacity * headDim * 4, n * headDim * 4);
      }
    }
  }
  queue.submit([encoder.finish()]);
  await queue.onSubmittedWorkDone();
  if (i > 0) copyTimes.push(performance.now() - t0); // the first is a warm-up
}
for (const b of scratch) b.destroy();
const rotateMs = median(rotateTimes);
const copyMs = median(copyTimes);
const gbps = (ms: number) => (2 * keyBytes) / (ms / 1000) / 1e9;
console.log(`\n## key rerotation on the device, cache of ${n} tokens (${(keyBytes / 2 ** 20).toFixed(1)} MiB of keys, read + written), median of ${repeats}\n`);
console.log('| operation | ms | GB/s (read + write) |');
console.log('|---|---|---|');
console.log(`| rerotateKeys (tables prepared) | ${rotateMs.toFixed(2)} | ${gbps(rotateMs).toFixed(1)} |`);
console.log(`| copyBufferToBuffer of the same key rows | ${copyMs.toFixed(2)} | ${gbps(copyMs).toFixed(1)} |`);
console.log(`\nrerotation bandwidth = ${((copyMs / rotateMs) * 100).toFixed(0)}% of copy bandwidth (GPU target ≥ 50%${software ? '; software adapter: reported only' : ''})`);

cache.dispose();
await gpu.dispose();
await ref?.dispose();
device.destroy();

// ---- --model DIR: a real checkpoint, a process per backend

/** What one backend's process reports. */
interface CheckpointRun {
  readonly description: string;
  readonly loadMs: number;
  readonly prefillMs: number;
  /** Median decode step time per cache length. */
  readonly decodeMs: Record<string, number>;
  readonly peakRssBytes: number;
  /** Logits of the prompt's last position, and of the first decode step after it. */
  readonly prefillLogits: number[];
  readonly stepLogits: number[];
}

async function benchCheckpointChild(dir: string, name: string): Promise<void> {
  const t0 = performance.now();
  const { config, weights } = await loadCheckpoint(dir);
  let backend: Backend;
  let description = 'reference (TypeScript + WASM SIMD)';
  if (name === 'webgpu') {
    const gpu = await createNodeWebGpuBackend(config, weights, { adapter: (values.adapter ?? 'auto') as 'auto' | 'gpu' | 'software', kernels: (values.kernels ?? 'auto') as KernelSetName | 'auto' });
    const split = [...gpu.matrixBlocks].filter(([, n]) => n > 1).map(([t, n]) => `${t} ${n}`);
    description = `webgpu: ${gpu.deviceDescription}; binding ${(gpu.maxBindingBytes / 2 ** 20).toFixed(0)} MiB, ${gpu.passLimits.tokens} tokens a pass; matrices in several buffers: ${split.join(', ') || 'none'}`;
    backend = gpu;
  } else if (name === 'reference') {
    backend = new ReferenceBackend(config, weights);
  } else {
    throw new Error(`--child: one of ${BACKENDS.join(', ')}`);
  }
  await weights.close();
  const loadMs = performance.now() - t0;
  const schedule = createRopeSchedule(config.rope);
  const promptLength = Number(values.prompt ?? 256);
  const lengths = (values.lengths ?? '256,4096').split(',').map(Number);
  const steps = Number(values.steps ?? 5);
  const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => ((from + i) * 31 + 7) % config.vocabSize);
  const step = async (cache: KvCache, count: number) => {
    const from = cache.length;
    const t = performance.now();
    const result = await backend.forward({ rows: [{ tokens: ids(count, from), positions: Int32Array.from({ length: count }, (_, i) => from + i), cache, regime: schedule.regimeFor(from + count) }] });
    return { ms: performance.now() - t, logits: result.rows[0]!.data };
  };
  // Warm-up (pipelines, first allocations), on a cache of its own.
  const warm = backend.createCache();
  await step(warm, 1);
  warm.dispose();
  const cache = backend.createCache();
  const prefill = await step(cache, promptLength);
  const decodeMs: Record<string, number> = {};
  let stepLogits: Float32Array | undefined;
  for (const length of lengths) {
    let c = cache;
    if (length !== promptLength) {
      // A cache of `length` tokens without running them (see the header).
      c = backend.createCache();
      c.reserve(length + steps);
      (c as RecordedKvCache).commit(ids(length), Int32Array.from({ length }, (_, i) => i), schedule.regimeFor(length));
    }
    const times: number[] = [];
    for (let s = 0; s < steps; s++) {
      const r = await step(c, 1);
      times.push(r.ms);
      if (c === cache && s === 0) stepLogits = r.logits;
    }
    decodeMs[length] = median(times);
    if (c !== cache) c.dispose();
  }
  cache.dispose();
  await backend.dispose();
  const run: CheckpointRun = {
    description,
    loadMs,
    prefillMs: prefill.ms,
    decodeMs,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    prefillLogits: Array.from(prefill.logits),
    stepLogits: Array.from(stepLogits ?? []),
  };
  // Written before the caller's process.exit: a pipe's writes are asynchronous.
  await new Promise<void>((done) => process.stdout.write(`${JSON.stringify(run)}\n`, () => done()));
}

async function benchCheckpoint(dir: string): Promise<void> {
  const script = fileURLToPath(import.meta.url);
  const pass = ['adapter', 'kernels', 'prompt', 'lengths', 'steps'].flatMap((k) => {
    const v = (values as Record<string, string | boolean | undefined>)[k];
    return typeof v === 'string' ? [`--${k}`, v] : [];
  });
  const runs: Partial<Record<(typeof BACKENDS)[number], CheckpointRun>> = {};
  const only = values['no-reference'] === true ? (['webgpu'] as const) : BACKENDS;
  for (const name of only) {
    const out = execFileSync(process.execPath, [...process.execArgv, script, '--model', dir, '--child', name, ...pass], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 << 20 });
    runs[name] = JSON.parse(out.trim().split('\n').at(-1)!) as CheckpointRun;
  }
  const { config } = await loadCheckpoint(dir);
  const promptLength = Number(values.prompt ?? 256);
  const lengths = (values.lengths ?? '256,4096').split(',').map(Number);
  const steps = Number(values.steps ?? 5);
  console.log(`machine: ${machine}`);
  console.log(`model: ${dir}: ${config.family}, hidden ${config.hiddenSize}, ${config.numLayers} layers, ${config.numHeads}/${config.numKvHeads} heads, head_dim ${config.headDim}, intermediate ${config.intermediateSize}, vocab ${config.vocabSize}`);
  for (const name of only) console.log(`${runs[name]!.description}`);
  const w = runs.webgpu!;
  const r = runs.reference;
  // The last column is always webgpu's figure over the reference's: a time, a rate or a size.
  const row = (figure: string, a: number, b: number | undefined, unit: (x: number) => string) =>
    console.log(`| ${figure} | ${unit(a)} | ${b === undefined ? '—' : unit(b)} | ${b === undefined ? '—' : `${(a / b).toFixed(2)}×`} |`);
  console.log('\n| figure | webgpu | reference | webgpu ÷ reference |');
  console.log('|---|---:|---:|---:|');
  row('load (checkpoint → backend ready), time', w.loadMs / 1000, r && r.loadMs / 1000, (x) => `${x.toFixed(1)} s`);
  const tps = (run: CheckpointRun) => (promptLength / run.prefillMs) * 1000;
  row(`prefill, ${promptLength} tokens in one forward, rate`, tps(w), r && tps(r), (x) => `${x.toFixed(1)} tok/s`);
  for (const length of lengths) {
    row(`decode step at cache ${length} (median of ${steps}), time`, w.decodeMs[length]!, r?.decodeMs[length], (x) => `${x.toFixed(0)} ms`);
  }
  row('peak RSS (each in its own process)', w.peakRssBytes / 1e9, r && r.peakRssBytes / 1e9, (x) => `${x.toFixed(2)} GB`);
  if (r) {
    const diff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
    const argmax = (a: number[]) => a.reduce((best, x, i) => (x > a[best]! ? i : best), 0);
    console.log(`\nmax |Δlogit| webgpu vs reference: prompt's last position ${diff(w.prefillLogits, r.prefillLogits).toExponential(2)}, first decode step ${diff(w.stepLogits, r.stepLogits).toExponential(2)}; argmax equal: ${argmax(w.prefillLogits) === argmax(r.prefillLogits) && argmax(w.stepLogits) === argmax(r.stepLogits)}`);
  }
}
