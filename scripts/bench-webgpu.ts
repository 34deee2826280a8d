// WebGPU backend benchmark, next to the reference backend in the same run: prefill tokens/s, decode
// step time at a few cache lengths, and the on-device key rerotation's bandwidth against a
// device-to-device copyBufferToBuffer of the same key rows (the issue's GPU target: ≥ 50% of copy
// bandwidth). Model: a mid-size Phi-3 layout (hidden 512, 8 layers, 8 heads, head_dim 64,
// intermediate 1536, vocab 1024, random weights). A benchmark, not a test: run it with
//   npx tsx scripts/bench-webgpu.ts [--quick] [--adapter auto|gpu|software] [--kernels auto|tiled|register-blocked]
//                                   [--prompt N] [--lengths 16,512,2048] [--steps N] [--no-reference]
// Timings are wall-clock from submission to completion (median of repeats); compare within one run.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { GpuKvCache, type KernelSetName, WebGpuBackend } from '@ropeswitch/backend-webgpu';
import { requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import { makeTinyModel } from '@ropeswitch/cli';
import { type Backend, type KvCache, LongRopeSchedule, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
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
  },
});
const quick = values.quick === true;
const { device, adapterDescription, software } = await requestNodeGpuDevice({ adapter: (values.adapter ?? 'auto') as 'auto' | 'gpu' | 'software' });
// The software adapter is slow: smaller defaults there (every number stays overridable).
const small = quick || software;
const promptLength = Number(values.prompt ?? (small ? 256 : 4096));
const lengths = (values.lengths ?? (quick ? '16,256' : software ? '16,512,2048' : '16,1024,4096')).split(',').map(Number);
const steps = Number(values.steps ?? (small ? 5 : 20));
const withReference = values['no-reference'] !== true;

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
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
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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
const scratch = Array.from({ length: numLayers }, () => device.createBuffer({ size: cache.keys(0).size, usage: 0x0008 /* COPY_DST */ }));
const copyTimes: number[] = [];
for (let i = 0; i <= repeats; i++) {
  const t0 = performance.now();
  const encoder = device.createCommandEncoder();
  for (let l = 0; l < numLayers; l++) {
    for (let h = 0; h < numKvHeads; h++) {
      const at = h * cache.capacity * headDim * 4;
      encoder.copyBufferToBuffer(cache.keys(l), at, scratch[l]!, at, n * headDim * 4);
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
