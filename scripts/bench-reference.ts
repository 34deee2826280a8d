// Reference backend throughput: prefill and decode tokens/s on the make-tiny default model and on a
// mid-size Phi-3 layout (hidden 512, 8 layers, head_dim 64). A benchmark, not a test: run it with
//   npx tsx scripts/bench-reference.ts [--prompt 4096] [--decode 16] [--only tiny|mid]
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeTinyModel, type TinyModelOptions } from '@ropeswitch/cli';
import { Session, loadCheckpoint } from '@ropeswitch/core';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { prompt: { type: 'string' }, decode: { type: 'string' }, only: { type: 'string' } } });
const promptLength = Number(values.prompt ?? 4096);
const decodeSteps = Number(values.decode ?? 16);

const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4/2 heads, vocab 128
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 },
};

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`prompt ${promptLength} tokens, then ${decodeSteps} decode steps (cache ≈ ${promptLength})\n`);
console.log('| model | prefill tok/s | prefill s | decode tok/s | decode ms/step |');
console.log('|---|---|---|---|---|');
for (const [name, options] of Object.entries(models)) {
  if (values.only && values.only !== name) continue;
  const dir = await mkdtemp(join(tmpdir(), `ropeswitch-bench-${name}-`));
  await makeTinyModel(dir, options);
  const { config, weights } = await loadCheckpoint(dir);
  const backend = new ReferenceBackend(config, weights);
  await weights.close();
  const prompt = Array.from({ length: promptLength }, (_, i) => (i * 31 + 7) % config.vocabSize);
  const session = new Session(backend);
  let t0 = performance.now();
  await session.forward(prompt);
  const prefillMs = performance.now() - t0;
  const stepMs: number[] = [];
  for (let i = 0; i < decodeSteps; i++) {
    t0 = performance.now();
    await session.forward([(i * 13) % config.vocabSize]);
    stepMs.push(performance.now() - t0);
  }
  stepMs.sort((a, b) => a - b);
  const median = stepMs[Math.floor(stepMs.length / 2)]!;
  console.log(
    `| ${name} (hidden ${config.hiddenSize}, ${config.numLayers} layers) | ${((promptLength / prefillMs) * 1000).toFixed(0)} | ${(prefillMs / 1000).toFixed(1)} | ${(1000 / median).toFixed(1)} | ${median.toFixed(1)} |`,
  );
  session.dispose();
  await backend.dispose();
  await rm(dir, { recursive: true });
}
