// Reference backend throughput: prefill and decode tokens/s on the make-tiny default model and on a
// mid-size Phi-3 layout (hidden 512, 8 layers, 8 heads, head_dim 64, intermediate 1536, vocab 1024),
// with the plain TypeScript kernels and the WebAssembly SIMD kernels side by side in one run (and
// how far apart their logits are). A benchmark, not a test: run it with
//   npx tsx scripts/bench-reference.ts [--prompt 4096] [--decode 16] [--only tiny|mid] [--kernels wasm|typescript]
import { ReferenceBackend, type ReferenceKernels } from '@ropeswitch/backend-reference';
import { makeTinyModel, type TinyModelOptions } from '@ropeswitch/cli';
import { Session, loadCheckpoint } from '@ropeswitch/core';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { prompt: { type: 'string' }, decode: { type: 'string' }, only: { type: 'string' }, kernels: { type: 'string' } } });
const promptLength = Number(values.prompt ?? 4096);
const decodeSteps = Number(values.decode ?? 16);
const kernelSets: ReferenceKernels[] = values.kernels ? [values.kernels as ReferenceKernels] : ['typescript', 'wasm'];

const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4/2 heads, vocab 128
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 },
};

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`prompt ${promptLength} tokens, then ${decodeSteps} decode steps (cache ≈ ${promptLength}); median step\n`);
console.log('| model | kernels | prefill tok/s | prefill s | decode tok/s | decode ms/step | decode speed-up | max |Δ logit| vs typescript |');
console.log('|---|---|---|---|---|---|---|---|');
for (const [name, options] of Object.entries(models)) {
  if (values.only && values.only !== name) continue;
  const dir = await mkdtemp(join(tmpdir(), `ropeswitch-bench-${name}-`));
  await makeTinyModel(dir, options);
  const prompt = Array.from({ length: promptLength }, (_, i) => (i * 31 + 7) % 1024);
  let baseline: { stepMs: number; logits: Float32Array[] } | undefined;
  for (const kernels of kernelSets) {
    const { config, weights } = await loadCheckpoint(dir);
    const backend = new ReferenceBackend(config, weights, { kernels });
    await weights.close();
    const session = new Session(backend);
    let t0 = performance.now();
    const logits = [await session.forward(prompt.map((id) => id % config.vocabSize))];
    const prefillMs = performance.now() - t0;
    const stepMs: number[] = [];
    for (let i = 0; i < decodeSteps; i++) {
      t0 = performance.now();
      logits.push(await session.forward([(i * 13) % config.vocabSize]));
      stepMs.push(performance.now() - t0);
    }
    stepMs.sort((a, b) => a - b);
    const median = stepMs[Math.floor(stepMs.length / 2)]!;
    let diff = '—';
    if (baseline) {
      let d = 0;
      logits.forEach((l, s) => l.forEach((v, i) => (d = Math.max(d, Math.abs(v - baseline!.logits[s]![i]!)))));
      diff = d.toExponential(1);
    }
    baseline ??= { stepMs: median, logits };
    console.log(
      `| ${name} (hidden ${config.hiddenSize}, ${config.numLayers} layers) | ${kernels} | ${((promptLength / prefillMs) * 1000).toFixed(0)} | ${(prefillMs / 1000).toFixed(1)} | ${(1000 / median).toFixed(1)} | ${median.toFixed(1)} | ${(baseline.stepMs / median).toFixed(2)}× | ${diff} |`,
    );
    session.dispose();
    await backend.dispose();
  }
  await rm(dir, { recursive: true });
}
