// float16 against float32 KV caches on the onnxruntime backend at a long cache: decode ms/step and
// the logits' distance, side by side in one process. A measurement, not a test (run it alone):
//   npx tsx scripts/measure-onnx-cache-dtype.ts --model DIR [--quantize int4|int8] [--cache 4096]
//     [--decode 16] [--last 64] [--threads 2] [--prefill-chunk 256] [--cache-dir DIR]
//
// Both backends (cacheDtype float32 and float16; two exports of the same weights) prefill the same
// `--cache` − `--decode` tokens into caches reserved for `--cache` rows, returning the logits of the
// last `--last` prompt tokens, then run `--decode` teacher-forced decode steps, alternating between
// the two each step (the same machine noise on both). Quality compares every logit row the two
// produced for the same prefix: max |Δlogit|, top-1 agreement, mean KL(float32 ‖ float16).
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { type KvCache, argmax, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { cpus, tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { klDivergence } from '../packages/cli/src/bench/logit-metrics.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    quantize: { type: 'string' },
    cache: { type: 'string' },
    decode: { type: 'string' },
    last: { type: 'string' },
    threads: { type: 'string' },
    'prefill-chunk': { type: 'string' },
    'cache-dir': { type: 'string' },
  },
});
if (!values.model) throw new Error('--model DIR is required');
const model = values.model;
const quantize = values.quantize as 'int4' | 'int8' | undefined;
const cacheRows = Number(values.cache ?? 4096);
const decodeSteps = Number(values.decode ?? 16);
const last = Number(values.last ?? 64);
const threads = Number(values.threads ?? 2);
const prefillChunk = Number(values['prefill-chunk'] ?? 256);
const DTYPES = ['float32', 'float16'] as const;

const { config, weights } = await loadCheckpoint(model);
const backends = [] as OnnxRuntimeBackend[];
for (const cacheDtype of DTYPES) {
  backends.push(
    await OnnxRuntimeBackend.open(config, weights, {
      cacheDir: values['cache-dir'] ?? tmpdir(),
      checkpointDir: model,
      threads,
      prefillChunk,
      cacheDtype,
      ...(quantize ? { quantize } : {}),
    }),
  );
}
await weights.close();
console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}; model ${model} (${config.numLayers} layers, hidden ${config.hiddenSize}), weights ${quantize ?? 'float32'}, threads ${threads}, cache ${cacheRows} rows, prefill chunk ${prefillChunk}`);

const schedule = createRopeSchedule(config.rope);
const regime = schedule.regimeFor(cacheRows);
const token = (i: number) => (i * 31 + 7) % config.vocabSize;
const prompt = Array.from({ length: cacheRows - decodeSteps }, (_, i) => token(i));
const caches: KvCache[] = backends.map((b) => b.createCache());
const logits: Float32Array[][] = backends.map(() => []);
const prefillMs: number[] = [];
for (const [k, backend] of backends.entries()) {
  caches[k]!.reserve(cacheRows);
  const t = performance.now();
  const out = await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache: caches[k]!, regime, logits: last }] });
  prefillMs.push(performance.now() - t);
  const { data, vocabSize } = out.rows[0]!;
  for (let r = 0; r < last; r++) logits[k]!.push(data.slice(r * vocabSize, (r + 1) * vocabSize));
}
const stepMs: number[][] = backends.map(() => []);
for (let i = 0; i < decodeSteps; i++) {
  const at = prompt.length + i;
  // Alternate which one goes first, so neither always runs on a cooler cache.
  const order = i % 2 === 0 ? [0, 1] : [1, 0];
  for (const k of order) {
    const t = performance.now();
    const out = await backends[k]!.forward({ rows: [{ tokens: [token(at)], positions: [at], cache: caches[k]!, regime }] });
    stepMs[k]!.push(performance.now() - t);
    logits[k]!.push(out.rows[0]!.data);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
let worst = 0;
let agree = 0;
let kl = 0;
logits[0]!.forEach((ref, i) => {
  const got = logits[1]![i]!;
  for (let j = 0; j < ref.length; j++) worst = Math.max(worst, Math.abs(got[j]! - ref[j]!));
  if (argmax(ref) === argmax(got)) agree++;
  kl += Math.max(0, klDivergence(ref, got));
});
const rows = logits[0]!.length;
console.log('\n| KV cache | cache GB | prefill tok/s | decode ms/step (median) | ÷ float32 |');
console.log('|---|---:|---:|---:|---:|');
for (const [k, dtype] of DTYPES.entries()) {
  const ms = median(stepMs[k]!);
  console.log(`| ${dtype} | ${(caches[k]!.byteLength / 1e9).toFixed(3)} | ${((prompt.length / prefillMs[k]!) * 1000).toFixed(0)} | ${ms.toFixed(1)} | ${(ms / median(stepMs[0]!)).toFixed(2)} |`);
}
console.log(`\nfloat16 against float32, ${rows} logit rows (${last} prompt positions + ${decodeSteps} decode steps, teacher-forced): max |Δlogit| ${worst.toExponential(2)}, top-1 agreement ${((100 * agree) / rows).toFixed(1)}%, mean KL ${(kl / rows).toExponential(2)} nats`);
console.log(`decode steps, ms: float32 ${stepMs[0]!.map((x) => x.toFixed(0)).join(' ')}; float16 ${stepMs[1]!.map((x) => x.toFixed(0)).join(' ')}`);
caches.forEach((c) => c.dispose());
for (const b of backends) await b.dispose();
