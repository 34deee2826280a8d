// The onnxruntime backend with and without its cache block pool (`cachePoolBytes`), side by side in
// one process: what a server's cache churn costs. A measurement, not a test (run it alone):
//   npx tsx scripts/measure-cache-pool.ts --model DIR [--tokens 4000] [--chunk 256] [--rounds 4]
//     [--threads 2] [--cache-dir DIR]
//
// Both backends (cachePoolBytes 0 and the default; one export) hold a cache of `--tokens` tokens.
// Each round, on each (alternating which goes first):
// - clone: `cache.clone({ capacity: tokens + 32 })` and dispose it, as a prefix-cache hit and its
//   release do;
// - chunked prefill: a fresh cache reserved for `tokens + 32`, the same tokens as one forward per
//   `--chunk` tokens (as `BatchScheduler` sends a prompt), then dispose it.
// Prints the median of each, the ratio of the pooled backend to the other, and the pool's counters.
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { type KvCache, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { cpus, tmpdir } from 'node:os';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    tokens: { type: 'string' },
    chunk: { type: 'string' },
    rounds: { type: 'string' },
    threads: { type: 'string' },
    'cache-dir': { type: 'string' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const model = values.model;
const tokens = Number(values.tokens ?? 4000);
const chunk = Number(values.chunk ?? 256);
const rounds = Number(values.rounds ?? 4);
const threads = Number(values.threads ?? 2);
const SIDES = [
  { name: 'no pool (cachePoolBytes 0)', cachePoolBytes: 0 },
  { name: 'pool (default 1 GiB)', cachePoolBytes: undefined },
] as const;

const { config, weights } = await loadCheckpoint(model);
const backends: OnnxRuntimeBackend[] = [];
for (const side of SIDES) {
  backends.push(
    await OnnxRuntimeBackend.open(config, weights, {
      cacheDir: values['cache-dir'] ?? tmpdir(),
      checkpointDir: model,
      threads,
      ...(side.cachePoolBytes !== undefined ? { cachePoolBytes: side.cachePoolBytes } : {}),
    }),
  );
}
await weights.close();
console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}; model ${model} (${config.numLayers} layers, hidden ${config.hiddenSize}), threads ${threads}, ${tokens} tokens, chunks of ${chunk}, ${rounds} rounds`);

const regime = createRopeSchedule(config.rope).regimeFor(tokens + 32);
const ids = Array.from({ length: tokens }, (_, i) => (i * 31 + 7) % config.vocabSize);
const positions = ids.map((_, i) => i);
async function prefill(backend: OnnxRuntimeBackend, cache: KvCache, step: number): Promise<void> {
  for (let from = 0; from < ids.length; from += step) {
    const to = Math.min(ids.length, from + step);
    await backend.forward({ rows: [{ tokens: ids.slice(from, to), positions: positions.slice(from, to), cache, regime }] });
  }
}
const sources: KvCache[] = [];
for (const backend of backends) {
  const cache = backend.createCache();
  cache.reserve(tokens + 32);
  await prefill(backend, cache, tokens);
  sources.push(cache);
}

const cloneMs: number[][] = backends.map(() => []);
const prefillMs: number[][] = backends.map(() => []);
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? [0, 1] : [1, 0];
  for (const k of order) {
    let t = performance.now();
    sources[k]!.clone({ capacity: tokens + 32 }).dispose();
    cloneMs[k]!.push(performance.now() - t);
    const cache = backends[k]!.createCache();
    t = performance.now();
    cache.reserve(tokens + 32);
    await prefill(backends[k]!, cache, chunk);
    prefillMs[k]!.push(performance.now() - t);
    cache.dispose();
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
console.log('\n| backend | clone ms (median) | ÷ no pool | chunked prefill s (median) | tok/s | ÷ no pool | pool hits / misses | pooled MB |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const [k, side] of SIDES.entries()) {
  const c = median(cloneMs[k]!);
  const p = median(prefillMs[k]!);
  const stats = backends[k]!.cachePoolStats;
  console.log(
    `| ${side.name} | ${c.toFixed(0)} | ${(c / median(cloneMs[0]!)).toFixed(2)} | ${(p / 1000).toFixed(2)} | ${((tokens / p) * 1000).toFixed(0)} | ${(p / median(prefillMs[0]!)).toFixed(2)} | ${stats.hits} / ${stats.misses} | ${(stats.pooledBytes / 2 ** 20).toFixed(0)} |`,
  );
}
for (const [k, side] of SIDES.entries()) console.log(`${side.name}: clone ms ${cloneMs[k]!.map((x) => x.toFixed(0)).join(' ')}; chunked prefill s ${prefillMs[k]!.map((x) => (x / 1000).toFixed(2)).join(' ')}`);
console.log(`peak RSS of the process (both backends): ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB`);
sources.forEach((c) => c.dispose());
for (const b of backends) await b.dispose();
