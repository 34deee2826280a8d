// The far scenario of `ropeswitch bench` for shadowPrefill, and the policy middleware's overhead.
//
// Far: a prompt of L/2 tokens, then teacher-forced decode steps until the sequence holds L + 16
// tokens. Step times of `stale` and of `shadowPrefill` with its defaults and a few (window, chunk)
// settings, each batched (the shadow chunk and the decode row in one forward call, the reference
// backend's default) and unbatched (a backend that takes one row per call, so wrapBackend splits the
// step into two calls). Target: maxStepRatio = max step / stale's median step ≤ 2.0.
//
// Overhead: decode steps of the bare backend (`backend.forward`) against `wrapBackend(backend,
// stale())`, alternating on two caches of the same sequence. Target: ≤ 1%.
//
// A measurement, not a test:
//   npx tsx scripts/measure-shadow.ts [--model tiny|mid] [--threshold L] [--prompt P]
//     [--settings default,1024:3,…] [--no-unbatched] [--overhead-steps 400] [--only far|overhead]
//     [--clock wall|cpu] [--repeats 3]
// --settings: `default` or `window:chunk` (either may be `-` for the policy's default).
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  type Backend,
  type CachePolicy,
  type ForwardRequest,
  Session,
  createRopeSchedule,
  loadCheckpoint,
  wrapBackend,
} from '@ropeswitch/core';
import { shadowPrefill, stale } from '@ropeswitch/policies';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type TinyModelOptions, makeTinyModel } from '../packages/cli/src/random-models/make-tiny-model.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    threshold: { type: 'string' },
    prompt: { type: 'string' },
    settings: { type: 'string' },
    'no-unbatched': { type: 'boolean' },
    'overhead-steps': { type: 'string' },
    only: { type: 'string' },
    clock: { type: 'string' },
    repeats: { type: 'string' },
  },
});
// Each variant runs `repeats` times; a step's time is its fastest over the runs, so a pause of the
// machine (another process, a GC) in one run does not pass for the cost of that step.
const repeats = Number(values.repeats ?? 3);
// `cpu` times each step by this process's CPU time (user + system), steadier than wall time on a
// machine shared with other work; `wall` (default) is what a user waits.
const clock = values.clock === 'cpu' ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();
const models: Record<string, TinyModelOptions> = {
  tiny: { seed: 1 }, // make-tiny defaults: hidden 64, 2 layers, 4 heads / 2 KV heads, head_dim 16
  mid: { seed: 1, hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536, vocab: 1024 },
};
const modelName = values.model ?? 'tiny';
const L = Number(values.threshold ?? 4096);
const promptLength = Number(values.prompt ?? L / 2);
const endLength = L + 16;
const settings = (values.settings ?? 'default').split(',');

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-shadow-'));
await makeTinyModel(dir, { ...models[modelName]!, originalMax: L });
const { config, weights } = await loadCheckpoint(dir);
const backend = new ReferenceBackend(config, weights);
await weights.close();
/** The same model taking one row per forward call: wrapBackend splits a shadow step into two calls. */
const oneRowPerCall: Backend = {
  name: 'reference (1 row per call)',
  config,
  capabilities: { ...backend.capabilities, maxRows: 1 },
  createCache: () => backend.createCache(),
  forward: (request) => backend.forward(request),
  rerotateKeys: (cache, to) => backend.rerotateKeys(cache, to),
  dispose: async () => {},
};
const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + 3) % config.vocabSize);
const prompt = ids(promptLength, 1);
const stream = ids(endLength - promptLength, 2);

const median = (xs: readonly number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const quantile = (xs: readonly number[], q: number): number => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

interface Run {
  readonly ttftMs: number;
  readonly steps: readonly { ms: number; length: number }[];
  readonly totalMs: number;
}

/** {@link farOnce} `repeats` times (fresh policy each time), each step at its fastest. */
async function far(b: Backend, policy: () => CachePolicy): Promise<Run> {
  const runs: Run[] = [];
  for (let r = 0; r < repeats; r++) runs.push(await farOnce(b, policy()));
  const fastest = (xs: number[]) => Math.min(...xs);
  return {
    ttftMs: fastest(runs.map((run) => run.ttftMs)),
    steps: runs[0]!.steps.map((s, i) => ({ length: s.length, ms: fastest(runs.map((run) => run.steps[i]!.ms)) })),
    totalMs: fastest(runs.map((run) => run.totalMs)),
  };
}

/** Prefill, then teacher-forced decode steps until the sequence holds `endLength` tokens. */
async function farOnce(b: Backend, policy: CachePolicy): Promise<Run> {
  const session = new Session(wrapBackend(b, policy));
  const t0 = clock();
  await session.prefill(prompt, { plannedLength: endLength });
  const ttftMs = clock() - t0;
  const steps: { ms: number; length: number }[] = [];
  for (const token of stream.slice(0, endLength - promptLength)) {
    const s0 = clock();
    await session.forward([token]);
    steps.push({ ms: clock() - s0, length: session.length });
  }
  const totalMs = clock() - t0;
  session.dispose();
  return { ttftMs, steps, totalMs };
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`clock: ${values.clock === 'cpu' ? 'CPU time of this process' : 'wall time'}`);
console.log(
  `model ${modelName}: hidden ${config.hiddenSize}, ${config.numLayers} layers, ${config.numHeads} heads / ${config.numKvHeads} KV heads, head_dim ${config.headDim}; L = ${L}`,
);

if (values.only !== 'overhead') {
  console.log(`\nfar: prompt ${promptLength}, decode to ${endLength} (${endLength - promptLength} steps); each step's time is its fastest of ${repeats} runs\n`);
  console.log('| policy | calls per step | TTFT ms | median step ms | p99 ms | max step ms | max at S | maxStepRatio | crossing ms | total s |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  await farOnce(backend, stale()); // JIT warm-up, dropped
  const base = await far(backend, () => stale());
  const staleMedian = median(base.steps.map((s) => s.ms));
  const print = (label: string, calls: string, run: Run) => {
    const ms = run.steps.map((s) => s.ms);
    let at = 0;
    for (let i = 1; i < ms.length; i++) if (ms[i]! > ms[at]!) at = i;
    const crossing = run.steps.find((s) => s.length === L + 1);
    console.log(
      `| ${label} | ${calls} | ${run.ttftMs.toFixed(0)} | ${median(ms).toFixed(2)} | ${quantile(ms, 0.99).toFixed(2)} | ${ms[at]!.toFixed(2)} | ${run.steps[at]!.length} | ${(ms[at]! / staleMedian).toFixed(2)} | ${crossing ? crossing.ms.toFixed(2) : '–'} | ${(run.totalMs / 1000).toFixed(1)} |`,
    );
  };
  print('stale', '1', base);
  for (const setting of settings) {
    const [w, c] = setting === 'default' ? ['-', '-'] : setting.split(':');
    const options = { ...(w && w !== '-' ? { window: Number(w) } : {}), ...(c && c !== '-' ? { chunk: Number(c) } : {}) };
    const label = `shadowPrefill(${setting === 'default' ? 'defaults' : `window ${w}, chunk ${c}`})`;
    print(label, '1 (2 rows)', await far(backend, () => shadowPrefill(options)));
    if (!values['no-unbatched']) print(label, '2 (1 row each)', await far(oneRowPerCall, () => shadowPrefill(options)));
  }
}

if (values.only !== 'far') {
  // Two caches of one sequence; their decode steps alternate so both see the same machine state.
  const steps = Number(values['overhead-steps'] ?? 400);
  const wrapped = wrapBackend(backend, stale());
  const regimeOf = createRopeSchedule(config.rope);
  const bare = backend.createCache();
  const viaChain = backend.createCache();
  const n = Math.min(promptLength, L - steps - 1);
  const row = (cache: ReturnType<typeof backend.createCache>, tokens: number[], from: number): ForwardRequest => ({
    rows: [{ tokens, positions: tokens.map((_, i) => from + i), cache, regime: regimeOf.regimeFor(from + tokens.length) }],
  });
  await backend.forward(row(bare, prompt.slice(0, n), 0));
  await backend.forward(row(viaChain, prompt.slice(0, n), 0));
  const bareMs: number[] = [];
  const wrappedMs: number[] = [];
  for (let i = 0; i < steps; i++) {
    const token = [stream[i % stream.length]!];
    const first = i % 2 === 0;
    for (const which of first ? ['bare', 'wrapped'] : ['wrapped', 'bare']) {
      const t0 = clock();
      if (which === 'bare') await backend.forward(row(bare, token, n + i));
      else await wrapped.forward(row(viaChain, token, n + i));
      (which === 'bare' ? bareMs : wrappedMs).push(clock() - t0);
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const trimmed = (xs: number[]) => mean(xs.slice().sort((a, b) => a - b).slice(0, Math.floor(xs.length * 0.9)));
  console.log(`\noverhead: ${steps} decode steps from a cache of ${n} tokens, bare backend vs wrapBackend(backend, stale()), alternating\n`);
  console.log('| | median ms | mean of fastest 90% ms |');
  console.log('|---|---|---|');
  console.log(`| bare backend.forward | ${median(bareMs).toFixed(4)} | ${trimmed(bareMs).toFixed(4)} |`);
  console.log(`| wrapBackend(backend, stale()).forward | ${median(wrappedMs).toFixed(4)} | ${trimmed(wrappedMs).toFixed(4)} |`);
  console.log(
    `| overhead | ${((median(wrappedMs) / median(bareMs) - 1) * 100).toFixed(2)}% | ${((trimmed(wrappedMs) / trimmed(bareMs) - 1) * 100).toFixed(2)}% |`,
  );
  // The chain's own cost, without the model: a request whose forward does nothing.
  const idle: Backend = { ...oneRowPerCall, capabilities: backend.capabilities, forward: async (r) => ({ rows: r.rows.map(() => ({ count: 1, vocabSize: config.vocabSize, data: new Float32Array(config.vocabSize) })) }) };
  const idleWrapped = wrapBackend(idle, stale());
  const req = row(viaChain, [1], viaChain.length);
  const reps = 100000;
  for (let i = 0; i < reps / 10; i++) {
    await idle.forward(req);
    await idleWrapped.forward(req);
  }
  let t0 = performance.now();
  for (let i = 0; i < reps; i++) await idle.forward(req);
  const idleBare = (performance.now() - t0) / reps;
  t0 = performance.now();
  for (let i = 0; i < reps; i++) await idleWrapped.forward(req);
  const idleChain = (performance.now() - t0) / reps;
  console.log(
    `\nthe chain alone (a backend that does nothing): ${((idleChain - idleBare) * 1000).toFixed(2)} µs per forward = ${(((idleChain - idleBare) / median(bareMs)) * 100).toFixed(2)}% of the bare decode step`,
  );
}

await backend.dispose();
await rm(dir, { recursive: true });
