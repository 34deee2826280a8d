// onnxruntime backend throughput against the reference backend, side by side in one run: prefill and
// decode tokens/s on the make-tiny default model and on a mid-size Phi-3 layout (hidden 512,
// 8 layers, 8 heads, head_dim 64, intermediate 1536, vocab 1024), plus the onnxruntime backend's
// zero-copy floor. A benchmark, not a test: run it with
//   npx tsx scripts/bench-onnxruntime.ts [--prompt 4096] [--decode 16] [--only tiny|mid] [--threads N]
//
// Zero-copy floor: the same exported decode graph, on the same cache storage (capacity and valid
// length), run directly through an onnxruntime session with feeds built once (no cos/sin tables, no
// tensor wrapping, no write-back of the new rows, no commit, no Session bookkeeping). It is what the ONNX graph itself costs; the
// backend's decode ÷ floor is the cost of everything the backend adds per step (target ≤ 1.2×).
// The weights floor (the same step at cache 16) is printed too: attention over the cache is the rest.
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeTinyModel, type TinyModelOptions } from '@ropeswitch/cli';
import { type Backend, type CpuKvCache, type ModelConfig, Session, createRopeSchedule, loadCheckpoint, rotaryTables } from '@ropeswitch/core';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

// onnxruntime-node is a dependency of the backend package, not of the workspace root: load it from there.
const ort: typeof import('onnxruntime-node') = createRequire(new URL('../packages/backends/onnxruntime/package.json', import.meta.url))('onnxruntime-node');

const { values } = parseArgs({ options: { prompt: { type: 'string' }, decode: { type: 'string' }, only: { type: 'string' }, threads: { type: 'string' } } });
const promptLength = Number(values.prompt ?? 4096);
const decodeSteps = Number(values.decode ?? 16);
const threads = values.threads === undefined ? undefined : Number(values.threads);

const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4/2 heads, vocab 128
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 },
};

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
type Feeds = Record<string, InstanceType<typeof ort.Tensor>>;

/**
 * Feeds of one decode step of the exported graph at `valid` cached rows, reading `cache`'s own
 * storage (the zero-copy floor), or fresh zeros of capacity 16 (the weights floor).
 */
function floorFeeds(config: ModelConfig, valid: number, cache: CpuKvCache | undefined): Feeds {
  const { numLayers, numKvHeads, headDim, rope } = config;
  const t = rotaryTables(createRopeSchedule(rope).regimeFor(valid + 1), [valid]);
  const feeds: Feeds = {
    input_ids: new ort.Tensor('int64', BigInt64Array.of(5n), [1]),
    rope_cos: new ort.Tensor('float32', t.cos, [1, t.half]),
    rope_sin: new ort.Tensor('float32', t.sin, [1, t.half]),
    past_length: new ort.Tensor('int64', BigInt64Array.of(BigInt(valid)), [1]),
    logits_count: new ort.Tensor('int64', BigInt64Array.of(1n), [1]),
  };
  const cap = cache?.capacity ?? 16;
  for (let l = 0; l < numLayers; l++) {
    feeds[`past_key.${l}`] = new ort.Tensor('float32', cache?.keys(l) ?? new Float32Array(numKvHeads * cap * headDim), [numKvHeads, cap, headDim]);
    feeds[`past_value.${l}`] = new ort.Tensor('float32', cache?.values(l) ?? new Float32Array(numKvHeads * cap * headDim), [numKvHeads, cap, headDim]);
  }
  return feeds;
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}`);
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
  const zeroCopy = floorFeeds(config, promptLength, ortCache);
  const weightsOnly = floorFeeds(config, 15, undefined);
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
