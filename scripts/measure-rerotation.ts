// Cost of rerotating a key cache against the cost of copying it: the `rerotate` target is "its
// rotation ≤ 3× the time to copy the key cache once". Builds a CpuKvCache of L tokens (positions
// 0 … L−1, random keys, rotated under LongRoPE's short regime) in the layout of the make-tiny
// default model and of the mid-size Phi-3 layout (no model runs), then times, as medians of
// several runs:
//   copy  — `TypedArray.set` of each layer's key storage into preallocated arrays;
//   cold  — rerotation short → long with fresh rerotation tables (what the crossing pays when
//           nothing was prepared);
//   warm  — rerotation with the tables already prepared (`RerotationTableCache.prepare`, what the
//           `rerotate` policy does in the steps before the crossing): one pass over the keys;
//   tables — preparing the tables alone;
//   wasm  — the warm rotation by the reference backend's WebAssembly SIMD kernel, on the same keys
//           in a cache whose storage is the kernels' memory (what `ReferenceBackend.rerotateKeys`
//           runs with its default kernels); the TypeScript columns are its `kernels: 'typescript'`.
// A measurement, not a test:
//   npx tsx scripts/measure-rerotation.ts [--length 4096] [--runs 9] [--only tiny|mid]
import { tinyModelConfig, type TinyModelOptions } from '../packages/cli/src/random-models/make-tiny-model.js';
import { WasmKernels } from '../packages/backends/reference/src/kernels/wasm/wasm-kernels.js';
import { CpuKvCache, RerotationTableCache, SeededRandom, createRopeSchedule, parseModelConfig, rerotateCpuKeys } from '@ropeswitch/core';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { length: { type: 'string' }, runs: { type: 'string' }, only: { type: 'string' } } });
const L = Number(values.length ?? 4096);
const runs = Number(values.runs ?? 9);

const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4 heads / 2 KV heads, head_dim 16
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 }, // head_dim 64
};

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const time = (f: () => void): number => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`key cache of ${L} tokens, medians of ${runs} runs\n`);
// One memory for every layer of any of the models below, one thread (the rotation itself is measured).
const wasm = new WasmKernels({ plan: [{ firstLayer: 0, endLayer: 1024, weightBytes: 0 }], threads: 1 });
await wasm.ready();
console.log('| model | key cache MiB | copy ms | TS rotation warm ms | warm / copy | TS rotation cold ms | cold / copy | tables alone ms | WASM rotation warm ms | WASM / copy | TS / WASM |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|');
for (const [name, options] of Object.entries(models)) {
  if (values.only && values.only !== name) continue;
  const config = parseModelConfig(tinyModelConfig({ ...options, originalMax: L }));
  const schedule = createRopeSchedule(config.rope);
  const short = schedule.regimeFor(1);
  const long = schedule.regimeFor(L + 1);
  const { numLayers, numKvHeads, headDim } = config;
  const cache = new CpuKvCache({ numLayers, numKvHeads, headDim }, L);
  cache.reserve(L);
  const rng = new SeededRandom(7);
  for (let l = 0; l < numLayers; l++) {
    const keys = cache.keys(l);
    for (let i = 0; i < keys.length; i++) keys[i] = rng.normal(1);
  }
  const ids = Int32Array.from({ length: L }, (_, i) => i % config.vocabSize);
  cache.commit(ids, Int32Array.from({ length: L }, (_, i) => i), short);

  // The same keys in the WebAssembly kernels' memory.
  const wasmCache = wasm.createCache({ numLayers, numKvHeads, headDim });
  wasmCache.reserve(L);
  wasmCache.commit(ids, Int32Array.from({ length: L }, (_, i) => i), short);

  const copies = Array.from({ length: numLayers }, (_, l) => new Float32Array(cache.keys(l).length));
  const copyKeys = (): void => {
    for (let l = 0; l < numLayers; l++) copies[l]!.set(cache.keys(l));
  };
  const { pairing } = schedule;
  const precision = 'float32' as const;
  // Each timed rotation short → long is followed by an untimed one back, so every run starts alike.
  const rotate = (memo: () => RerotationTableCache): number => {
    const m = memo();
    const ms = time(() => rerotateCpuKeys(cache, long, pairing, precision, m));
    rerotateCpuKeys(cache, short, pairing, precision, m);
    return ms;
  };
  const warmMemo = new RerotationTableCache();
  warmMemo.prepare(short, long, L, precision);
  warmMemo.prepare(long, short, L, precision);

  const rotateWasm = (): number => {
    const ms = time(() => rerotateCpuKeys(wasmCache, long, pairing, precision, warmMemo, wasm.rotateBlocks));
    rerotateCpuKeys(wasmCache, short, pairing, precision, warmMemo, wasm.rotateBlocks);
    return ms;
  };

  // The two kernels give the same bits: check it on this data (the same keys in both caches).
  for (let l = 0; l < numLayers; l++) wasmCache.keys(l).set(cache.keys(l));
  rerotateCpuKeys(cache, long, pairing, precision, warmMemo);
  rerotateCpuKeys(wasmCache, long, pairing, precision, warmMemo, wasm.rotateBlocks);
  const same = Array.from({ length: numLayers }, (_, l) => l).every((l) => cache.keys(l).every((v, i) => Object.is(v, wasmCache.keys(l)[i])));
  rerotateCpuKeys(cache, short, pairing, precision, warmMemo);
  rerotateCpuKeys(wasmCache, short, pairing, precision, warmMemo, wasm.rotateBlocks);

  const copy: number[] = [];
  const warm: number[] = [];
  const simd: number[] = [];
  const cold: number[] = [];
  const tables: number[] = [];
  for (let r = 0; r < runs + 2; r++) {
    // The first two runs warm the JIT up and are dropped.
    const c = time(copyKeys);
    const w = rotate(() => warmMemo);
    const k = rotate(() => new RerotationTableCache());
    const t = time(() => new RerotationTableCache().prepare(short, long, L, precision));
    const s = rotateWasm();
    if (r >= 2) {
      simd.push(s);
      copy.push(c);
      warm.push(w);
      cold.push(k);
      tables.push(t);
    }
  }
  const mib = (numLayers * numKvHeads * L * headDim * 4) / 2 ** 20;
  const c = median(copy);
  const w = median(warm);
  const k = median(cold);
  const s = median(simd);
  console.log(
    `| ${name} (${numLayers} layers × ${numKvHeads} KV heads × head_dim ${headDim}) | ${mib.toFixed(0)} | ${c.toFixed(3)} | ${w.toFixed(3)} | ${(w / c).toFixed(2)} | ${k.toFixed(3)} | ${(k / c).toFixed(2)} | ${median(tables).toFixed(3)} | ${s.toFixed(3)} | ${(s / c).toFixed(2)} | ${(w / s).toFixed(1)}×${same ? '' : ' (keys differ!)'} |`,
  );
  wasmCache.dispose();
}
