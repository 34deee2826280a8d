// GenaiOnnxBackend on an onnxruntime-genai-layout model against the same model run natively by
// onnxruntime with its own buffers, side by side in one run (interleaved round by round, medians).
// A benchmark, not a test:
//   npx tsx scripts/bench-onnxruntime-genai.ts --model CHECKPOINT_DIR [--genai-dir DIR] [--quantize int4] [--precision fp32|fp16]
//     [--prompt 256] [--decode 16] [--threads 2]
//
// The checkpoint is written once in the genai builder's layout (`writeGenaiModel`, into --genai-dir,
// reused when present). Per round:
// - native: the unmodified graph (GroupQueryAttention, past → present), each step fed the previous
//   step's present tensors as its past (no cache copy of ours: what onnxruntime-genai does without
//   past_present_share_buffer, and onnxruntime-node still copies every present out);
// - GenaiOnnxBackend: the rewritten graph (attention over the caller's cache, only new rows out),
//   a plain decode step (target ≤ 1.2× native), and a decode step with a 3-token shadow chunk.
import { GenaiOnnxBackend, readGenaiConfig, writeGenaiModel } from '@ropeswitch/backend-onnxruntime';
import { type CpuKvCache, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createGenaiSession, runGenaiStep } from '../packages/backends/onnxruntime/src/genai/genai-session.js';
import * as ort from 'onnxruntime-node';

const { values } = parseArgs({
  options: { model: { type: 'string' }, 'genai-dir': { type: 'string' }, quantize: { type: 'string' }, precision: { type: 'string' }, prompt: { type: 'string' }, decode: { type: 'string' }, threads: { type: 'string' } },
});
if (!values.model) throw new Error('--model CHECKPOINT_DIR is required');
const promptLength = Number(values.prompt ?? 256);
const steps = Number(values.decode ?? 16);
const threads = Number(values.threads ?? 2);
const quantize = values.quantize as 'int4' | undefined;
const precision = (values.precision ?? 'fp32') as 'fp32' | 'fp16';
const genaiDir = values['genai-dir'] ?? join(tmpdir(), `ropeswitch-genai-bench-${quantize ?? 'float'}-${precision}`);

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}, onnxruntime-node ${ort.env.versions.common}; threads ${threads}`);
const { config, weights } = await loadCheckpoint(values.model);
if (!existsSync(join(genaiDir, 'genai_config.json'))) {
  const t0 = performance.now();
  await writeGenaiModel(genaiDir, config, weights, { precision, ...(quantize ? { quantize } : {}) });
  console.log(`wrote the genai layout into ${genaiDir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
await weights.close();
const sessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const, executionMode: 'sequential' as const };
const genai = await readGenaiConfig(genaiDir);
const native = await createGenaiSession(join(genaiDir, genai.fileName), genaiDir, sessionOptions);
const backend = await GenaiOnnxBackend.open(genaiDir, { hfConfigDir: values.model, sessionOptions });

const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 31 + seed) % config.vocabSize);
const schedule = createRopeSchedule(config.rope);
// Native: prefill, then keep its own present tensors as the next past.
const { numLayers } = config;
let state = await runGenaiStep(native, genai.names, config, {
  tokens: ids(promptLength, 7),
  pastKeys: Array.from({ length: numLayers }, () => new Float32Array(0)),
  pastValues: Array.from({ length: numLayers }, () => new Float32Array(0)),
  pastLength: 0,
});
// Ours: the same prefill into a cache reserved for the whole run, and a shadow cache.
const cache = backend.createCache() as CpuKvCache;
const shadow = backend.createCache() as CpuKvCache;
cache.reserve(promptLength + 3 * steps + 4);
shadow.reserve(promptLength / 2 + 3 * steps + 4);
const row = (c: CpuKvCache, tokens: number[], regimeLength: number, logits: number) => ({ tokens, positions: tokens.map((_, i) => c.length + i), cache: c, regime: schedule.regimeFor(regimeLength), logits });
const long = (schedule.threshold ?? 0) + 1;
await backend.forward({ rows: [row(cache, ids(promptLength, 7), promptLength, 1)] });
await backend.forward({ rows: [row(shadow, ids(promptLength / 2, 3), long, 0)] });

const timed = async (f: () => Promise<unknown>) => {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
};
const t = { native: [] as number[], ours: [] as number[], shadow: [] as number[] };
for (let i = 0; i <= steps; i++) {
  const token = (i * 13) % config.vocabSize;
  const n = await timed(async () => {
    state = await runGenaiStep(native, genai.names, config, { tokens: [token], pastKeys: state.presentKeys, pastValues: state.presentValues, pastLength: state.totalLength });
  });
  const o = await timed(() => backend.forward({ rows: [row(cache, [token], cache.length + 1, 1)] }));
  const s = await timed(() => backend.forward({ rows: [row(cache, [token], cache.length + 1, 1), row(shadow, ids(3, i), long, 0)] }));
  if (i === 0) continue; // warm-up round
  t.native.push(n);
  t.ours.push(o);
  t.shadow.push(s);
}
const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;
const m = { native: median(t.native), ours: median(t.ours), shadow: median(t.shadow) };
const rss = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1e6;
console.log(`model: hidden ${config.hiddenSize}, ${numLayers} layers, weights ${quantize ?? 'float'}, activations ${precision}; prompt ${promptLength}, ${steps} rounds (medians, ms)`);
console.log('| decode step | ms | ÷ native |');
console.log('|---|---:|---:|');
console.log(`| native: unmodified graph, its own past → present buffers (cache ${state.totalLength}) | ${m.native.toFixed(1)} | 1.00 |`);
console.log(`| GenaiOnnxBackend: rewritten graph, caller-owned cache (${cache.length} of ${cache.capacity}) | ${m.ours.toFixed(1)} | ${(m.ours / m.native).toFixed(2)} (target ≤ 1.2) |`);
console.log(`| GenaiOnnxBackend: decode + 3-token shadow chunk, one run | ${m.shadow.toFixed(1)} | ${(m.shadow / m.native).toFixed(2)} (${(m.shadow / m.ours).toFixed(2)}× its plain step) |`);
console.log(`peak RSS ${rss.toFixed(2)} GB (both sessions hold the weights)`);
cache.dispose();
shadow.dispose();
await backend.dispose();
await native.release();
