// The far scenario of `ropeswitch bench` for shadowPrefill, and the policy middleware's overhead.
//
// Far: a prompt of L/2 tokens, then teacher-forced decode steps until the sequence holds L + 16
// tokens. Step times of `stale` and of `shadowPrefill` with its defaults and a few (window, chunk,
// pacing) settings, each batched (the shadow chunk and the decode row in one forward call, the
// reference and onnxruntime backends' default) and unbatched (a backend that takes one row per
// call, so wrapBackend splits the step into two calls). Each step is its fastest over the runs, so
// its maxStepRatio (max step / stale's median step) is the bench's floorMaxStepRatio, the far
// target: ≤ 2.5 on builtin's shape, 1.5 at the real shape.
//
// --lockstep runs every variant's session side by side: step i of each (stale first) before step
// i + 1 of any, so what the machine does meanwhile (another tenant, a change of clock) lands on
// all of them alike and a step's ratio to stale's same step is the variant's own work. It prints,
// per eighth of the decode steps, the median of that ratio, and the slowest step smoothed over 9
// neighbours (a pause of the machine moves one step, not nine) against stale's median step.
//
// Overhead: decode steps of the bare backend (`backend.forward`) against `wrapBackend(backend,
// stale())`, alternating on two caches of the same sequence. Target: ≤ 1%.
//
// A measurement, not a test:
//   npx tsx scripts/measure-shadow.ts [--model tiny|mid|DIR] [--backend reference|onnxruntime]
//     [--threads N] [--threshold L] [--prompt P] [--settings default,1024:3,-:-:tokens,…]
//     [--no-unbatched] [--lockstep] [--overhead-steps 400] [--only far|overhead]
//     [--clock wall|cpu] [--repeats 3]
// --model: a make-tiny shape (`tiny`, `mid`, made at --threshold) or a checkpoint folder (e.g. one
// `ropeswitch make-model --like phi-3-mini-128k --layers 2` wrote; its own L).
// --settings: `default` or `window:chunk[:pacing]` (any of them `-` for the policy's default).
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  type Backend,
  type CachePolicy,
  type ForwardRequest,
  Session,
  argmax,
  createRopeSchedule,
  loadCheckpoint,
  wrapBackend,
} from '@ropeswitch/core';
import { type ShadowPrefillOptions, shadowPrefill, stale } from '@ropeswitch/policies';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type TinyModelOptions, makeTinyModel } from '../packages/cli/src/random-models/make-tiny-model.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    backend: { type: 'string' },
    threads: { type: 'string' },
    threshold: { type: 'string' },
    prompt: { type: 'string' },
    settings: { type: 'string' },
    'no-unbatched': { type: 'boolean' },
    lockstep: { type: 'boolean' },
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
const backendName = values.backend ?? 'reference';
if (backendName !== 'reference' && backendName !== 'onnxruntime') throw new Error(`--backend must be reference or onnxruntime; got ${backendName}`);
const threads = values.threads === undefined ? undefined : Number(values.threads);
const settings = (values.settings ?? 'default').split(',');

// A make-tiny shape in a temporary folder, or the checkpoint folder given.
const made = modelName in models ? await mkdtemp(join(tmpdir(), 'ropeswitch-shadow-')) : undefined;
if (made) await makeTinyModel(made, { ...models[modelName]!, originalMax: Number(values.threshold ?? 4096) });
const dir = made ?? modelName;
const { config, weights } = await loadCheckpoint(dir);
const backend: Backend =
  backendName === 'onnxruntime'
    ? await OnnxRuntimeBackend.open(config, weights, { checkpointDir: dir, ...(threads !== undefined ? { threads } : {}) })
    : new ReferenceBackend(config, weights, threads !== undefined ? { threads } : {});
await weights.close();
const threshold = createRopeSchedule(config.rope).threshold;
if (threshold === undefined) throw new Error('the model never changes its RoPE with the length: nothing to measure');
const L = threshold;
const promptLength = Number(values.prompt ?? L / 2);
const endLength = L + 16;
/** The same model taking one row per forward call: wrapBackend splits a shadow step into two calls. */
const oneRowPerCall: Backend = {
  name: `${backend.name} (1 row per call)`,
  config,
  capabilities: { ...backend.capabilities, maxRows: 1, rerotateKeys: false },
  createCache: () => backend.createCache(),
  forward: (request) => backend.forward(request),
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

/** One far run, a step at a time (so that several can advance side by side). */
class FarRun {
  private readonly session: Session;
  private ttftMs = 0;
  private readonly steps: { ms: number; length: number }[] = [];

  constructor(b: Backend, policy: CachePolicy) {
    this.session = new Session(wrapBackend(b, policy));
  }

  async prefill(): Promise<void> {
    const t0 = clock();
    await this.session.prefill(prompt, { plannedLength: endLength });
    this.ttftMs = clock() - t0;
  }

  /** Decode step `i` (teacher-forced). */
  async step(i: number): Promise<void> {
    const s0 = clock();
    await this.session.forward([stream[i]!]);
    this.steps.push({ ms: clock() - s0, length: this.session.length });
  }

  /** The run's own time: its prompt and its steps (in lockstep the others' steps fall between them). */
  finish(): Run {
    this.session.dispose();
    return { ttftMs: this.ttftMs, steps: this.steps, totalMs: this.steps.reduce((sum, s) => sum + s.ms, this.ttftMs) };
  }
}

const decodeSteps = endLength - promptLength;

/** Prefill, then teacher-forced decode steps until the sequence holds `endLength` tokens. */
async function farOnce(b: Backend, policy: CachePolicy): Promise<Run> {
  const run = new FarRun(b, policy);
  await run.prefill();
  for (let i = 0; i < decodeSteps; i++) await run.step(i);
  return run.finish();
}

/** Each step (and the TTFT and total) at its fastest over `runs`. */
function fastestOf(runs: readonly Run[]): Run {
  const fastest = (xs: number[]) => Math.min(...xs);
  return {
    ttftMs: fastest(runs.map((run) => run.ttftMs)),
    steps: runs[0]!.steps.map((s, i) => ({ length: s.length, ms: fastest(runs.map((run) => run.steps[i]!.ms)) })),
    totalMs: fastest(runs.map((run) => run.totalMs)),
  };
}

/**
 * Every variant's run advancing step by step beside the others, `repeats` times (fresh policies
 * each time), each step at its fastest over them. One variant at a time is the sequential mode.
 */
async function farLockstep(variants: readonly { b: Backend; policy: () => CachePolicy }[]): Promise<Run[]> {
  const rounds: Run[][] = [];
  for (let r = 0; r < repeats; r++) {
    const runs = variants.map((v) => new FarRun(v.b, v.policy()));
    for (const run of runs) await run.prefill();
    for (let i = 0; i < decodeSteps; i++) for (const run of runs) await run.step(i);
    rounds.push(runs.map((run) => run.finish()));
  }
  return variants.map((_, k) => fastestOf(rounds.map((round) => round[k]!)));
}

/** A `--settings` entry as shadowPrefill options and a label. */
function parseSetting(setting: string): { options: ShadowPrefillOptions; label: string } {
  if (setting === 'default') return { options: {}, label: 'shadowPrefill(defaults)' };
  const [w, c, p] = setting.split(':');
  const given = (x: string | undefined) => x !== undefined && x !== '' && x !== '-';
  const options: ShadowPrefillOptions = {
    ...(given(w) ? { window: Number(w) } : {}),
    ...(given(c) ? { chunk: Number(c) } : {}),
    ...(given(p) ? { pacing: p as ShadowPrefillOptions['pacing'] } : {}),
  };
  const parts = [given(w) ? `window ${w}` : '', given(c) ? `chunk ${c}` : '', given(p) ? `pacing ${p}` : ''].filter(Boolean);
  return { options, label: `shadowPrefill(${parts.join(', ') || 'defaults'})` };
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`);
console.log(`clock: ${values.clock === 'cpu' ? 'CPU time of this process' : 'wall time'}`);
console.log(
  `model ${modelName}: hidden ${config.hiddenSize}, ${config.numLayers} layers, ${config.numHeads} heads / ${config.numKvHeads} KV heads, head_dim ${config.headDim}; L = ${L}; backend ${backend.name}${threads !== undefined ? `, ${threads} threads` : ''}`,
);

if (values.only !== 'overhead') {
  await farOnce(backend, stale()); // JIT warm-up, dropped
  const variants: { label: string; calls: string; b: Backend; policy: () => CachePolicy }[] = [{ label: 'stale', calls: '1', b: backend, policy: () => stale() }];
  for (const setting of settings) {
    const { options, label } = parseSetting(setting);
    variants.push({ label, calls: '1 (2 rows)', b: backend, policy: () => shadowPrefill(options) });
    if (!values['no-unbatched']) variants.push({ label, calls: '2 (1 row each)', b: oneRowPerCall, policy: () => shadowPrefill(options) });
  }
  const how = values.lockstep ? 'all variants side by side, step by step' : 'one variant after another';
  console.log(`\nfar: prompt ${promptLength}, decode to ${endLength} (${decodeSteps} steps), ${how}; each step's time is its fastest of ${repeats} runs\n`);
  const runs: Run[] = [];
  if (values.lockstep) runs.push(...(await farLockstep(variants)));
  else for (const v of variants) runs.push(...(await farLockstep([v])));
  const base = runs[0]!;
  const staleMedian = median(base.steps.map((s) => s.ms));
  const eighths = Array.from({ length: 8 }, (_, e) => [Math.floor((e * decodeSteps) / 8), Math.floor(((e + 1) * decodeSteps) / 8)] as const);
  console.log(
    `| policy | calls per step | TTFT ms | median step ms | p99 ms | max step ms | max at S | maxStepRatio | smoothed max ratio (at S) |${values.lockstep ? ' × stale same step, median per eighth of the steps |' : ''} crossing ms | total s |`,
  );
  console.log(`|---|---|---|---|---|---|---|---|---|${values.lockstep ? '---|' : ''}---|---|`);
  runs.forEach((run, k) => {
    const { label, calls } = variants[k]!;
    const ms = run.steps.map((s) => s.ms);
    const at = argmax(ms);
    // The slowest step once each is the median of its 9 neighbours: a pause moves one step, a cost moves them all.
    const smooth = ms.map((_, i) => median(ms.slice(Math.max(0, i - 4), i + 5)));
    const sAt = argmax(smooth);
    // Against stale's same step: meaningful only when the two ran side by side.
    const perEighth = values.lockstep ? eighths.map(([a, b]) => median(ms.slice(a, b).map((x, i) => x / base.steps[a + i]!.ms)).toFixed(2)).join(' ') : '';
    const crossing = run.steps.find((s) => s.length === L + 1);
    console.log(
      `| ${label} | ${calls} | ${run.ttftMs.toFixed(0)} | ${median(ms).toFixed(2)} | ${quantile(ms, 0.99).toFixed(2)} | ${ms[at]!.toFixed(2)} | ${run.steps[at]!.length} | ${(ms[at]! / staleMedian).toFixed(2)} | ${(smooth[sAt]! / staleMedian).toFixed(2)} (${run.steps[sAt]!.length}) |${values.lockstep ? ` ${perEighth} |` : ''} ${crossing ? crossing.ms.toFixed(2) : '–'} | ${(run.totalMs / 1000).toFixed(1)} |`,
    );
  });
  // In lockstep every variant's caches are alive at once: the peak is theirs together, with the weights.
  console.log(`\npeak RSS of the process: ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB${values.lockstep ? ` (all ${variants.length} variants' caches at once)` : ''}`);
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
if (made) await rm(made, { recursive: true });
