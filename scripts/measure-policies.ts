// Per-policy cost at the real threshold: a make-tiny model (L = 4096), a 4090-token prompt, then
// 16 decode steps across the crossing (the 7th decode forward is the first of 4097 tokens). Prints
// time to first token, median decode step, the crossing step, its ratio to the median, and total
// time. A measurement, not a test (the benchmark with quality metrics is `ropeswitch bench`):
//   npx tsx scripts/measure-policies.ts [--prompt 4090] [--new-tokens 16] [--model-seed 1]
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeTinyModel } from '@ropeswitch/cli';
import { Session, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { POLICY_NAMES, policyByName } from '@ropeswitch/policies';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { prompt: { type: 'string' }, 'new-tokens': { type: 'string' }, 'model-seed': { type: 'string' } } });
const promptLength = Number(values.prompt ?? 4090);
const newTokens = Number(values['new-tokens'] ?? 16);

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-policies-'));
await makeTinyModel(dir, { seed: Number(values['model-seed'] ?? 1) });
const { config, weights } = await loadCheckpoint(dir);
const backend = new ReferenceBackend(config, weights);
await weights.close();
const prompt = Array.from({ length: promptLength }, (_, i) => (i * 31 + 7) % config.vocabSize);
const stream = Array.from({ length: newTokens }, (_, i) => (i * 13 + 5) % config.vocabSize);

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`make-tiny (hidden ${config.hiddenSize}, ${config.numLayers} layers), L = ${config.rope.scaling.type === 'longrope' ? config.rope.scaling.originalMaxPositionEmbeddings : '?'}, prompt ${promptLength}, ${newTokens} new tokens\n`);
console.log('| policy | TTFT ms | median step ms | crossing step ms | crossing / median | max step / median | total ms | events |');
console.log('|---|---|---|---|---|---|---|---|');
for (const name of POLICY_NAMES) {
  const session = new Session(wrapBackend(backend, policyByName(name)));
  const t0 = performance.now();
  await session.prefill(prompt, { plannedLength: promptLength + newTokens });
  const ttft = performance.now() - t0;
  const steps: { ms: number; length: number }[] = [];
  for (const token of stream.slice(0, -1)) {
    const s0 = performance.now();
    await session.forward([token]);
    steps.push({ ms: performance.now() - s0, length: session.length });
  }
  const total = performance.now() - t0;
  const threshold = session.schedule.threshold ?? Infinity;
  const crossing = steps.find((s) => s.length === threshold + 1);
  const sorted = steps.map((s) => s.ms).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const max = sorted[sorted.length - 1]!;
  const events = session.events.map((e) => e.type).join(', ') || '–';
  console.log(
    `| ${name} | ${ttft.toFixed(0)} | ${median.toFixed(2)} | ${crossing ? crossing.ms.toFixed(2) : '–'} | ${crossing ? (crossing.ms / median).toFixed(2) : '–'} | ${(max / median).toFixed(2)} | ${total.toFixed(0)} | ${events} |`,
  );
  session.dispose();
}
await backend.dispose();
await rm(dir, { recursive: true });
