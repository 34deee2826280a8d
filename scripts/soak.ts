// Soak: long generations, measuring memory as they go. A script, not a test:
//   node --expose-gc --import tsx scripts/soak.ts [--total 32768] [--every 2048] [--dynamic-total 1024]
//     [--only longrope|dynamic] [--policies stale,re-prefill,shadow-prefill]
//
// 1. LongRoPE (make-tiny, L = 4096, M = 131072): a 4000-token prompt, then greedy decoding to
//    `--total` tokens (default 32,768), with stale, rePrefill and shadowPrefill.
// 2. Dynamic NTK (a Llama tiny config, rope_scaling dynamic, threshold 256): a 200-token prompt to
//    `--dynamic-total` tokens (default 1,024), with stale and rePrefill. Past the threshold the
//    regime changes at every step and rePrefill recomputes the whole sequence each time (O(n²) per
//    step, O(n³) in all), hence the shorter run.
//
// Every `--every` steps (and at the crossing) it collects garbage (with --expose-gc) and records
// V8 heap used, ArrayBuffer memory (where typed-array caches live, outside the V8 heap), RSS, and
// the session cache's byteLength (samples are taken between forwards: a copy built and swapped within
// one forward is not seen). It prints one CSV table per run and PASS/FAIL per run: memory
// after the prompt grows by no more than the caches it holds (the live cache, plus a rebuilt or
// shadow copy while one exists) plus 8 MiB of slack, and what is not the session's cache does not
// creep over the decode.
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeTinyModel, writeRandomCheckpoint } from '@ropeswitch/cli';
import { type Backend, type CachePolicy, Session, argmax, createRopeSchedule, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { rePrefill, shadowPrefill, stale } from '@ropeswitch/policies';
import { TINY_LLAMA } from '@ropeswitch/testkit';

const { values } = parseArgs({
  options: { total: { type: 'string' }, every: { type: 'string' }, 'dynamic-total': { type: 'string' }, 'dynamic-every': { type: 'string' }, only: { type: 'string' }, policies: { type: 'string' } },
});
/** `--policies stale,re-prefill` runs only those (default: all of each part). */
const wanted = (name: string) => values.policies === undefined || values.policies.split(',').some((p) => name.startsWith(p.trim()));
const TOTAL = Number(values.total ?? 32768);
const EVERY = Number(values.every ?? 2048);
const DYNAMIC_TOTAL = Number(values['dynamic-total'] ?? 1024);
const DYNAMIC_EVERY = Number(values['dynamic-every'] ?? 128);
const SLACK = 8 * 2 ** 20;
const MiB = 2 ** 20;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) console.log('warning: run with node --expose-gc for meaningful heap numbers (no forced GC now)');

interface Sample {
  readonly step: number;
  readonly length: number;
  readonly heap: number;
  readonly buffers: number;
  readonly rss: number;
  readonly cache: number;
  readonly seconds: number;
}

function measure(step: number, session: Session | undefined, started: number): Sample {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return {
    step,
    length: session?.length ?? 0,
    heap: m.heapUsed,
    buffers: m.arrayBuffers,
    rss: m.rss,
    cache: session?.cache.byteLength ?? 0,
    seconds: (performance.now() - started) / 1000,
  };
}

const mb = (n: number) => (n / MiB).toFixed(1);

interface RunSpec {
  readonly label: string;
  readonly backend: Backend;
  readonly policy: () => CachePolicy;
  readonly promptLength: number;
  readonly total: number;
  readonly every: number;
  /** Caches that may coexist at the peak (live + rebuilt/shadow copy). */
  readonly copies: number;
}

async function soak(spec: RunSpec): Promise<boolean> {
  const { backend, promptLength, total, every } = spec;
  const vocab = backend.config.vocabSize;
  const prompt = Array.from({ length: promptLength }, (_, i) => (i * 31 + 7) % vocab);
  const threshold = createRopeSchedule(backend.config.rope).threshold ?? Infinity;
  const started = performance.now();
  const base = measure(0, undefined, started);
  const session = new Session(wrapBackend(backend, spec.policy()));
  let logits = await session.prefill(prompt, { plannedLength: total });
  const samples: Sample[] = [measure(0, session, started)];
  let crossingSeen = false;
  for (let step = 1; session.length < total; step++) {
    logits = await session.forward([argmax(logits)]);
    const crossed = !crossingSeen && session.length > threshold;
    if (crossed) crossingSeen = true;
    if (step % every === 0 || crossed || session.length === total) samples.push(measure(step, session, started));
  }
  const events = session.events.length;
  const cacheBytes = session.cache.byteLength;
  session.dispose();
  const after = measure(-1, undefined, started);

  console.log(`\n## ${spec.label}: prompt ${promptLength} → ${total} tokens (threshold ${threshold}), ${events} policy events, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  console.log(`baseline before the session: heap ${mb(base.heap)} MiB, array buffers ${mb(base.buffers)} MiB, rss ${mb(base.rss)} MiB`);
  console.log('step,length,heap_MiB,arraybuffers_MiB,heap+buffers_over_baseline_MiB,rss_MiB,cache_MiB,seconds');
  const over = (s: Sample) => s.heap + s.buffers - base.heap - base.buffers;
  for (const s of samples) console.log(`${s.step},${s.length},${mb(s.heap)},${mb(s.buffers)},${mb(over(s))},${mb(s.rss)},${mb(s.cache)},${s.seconds.toFixed(1)}`);
  console.log(`after dispose: heap+buffers over baseline ${mb(over(after))} MiB, rss ${mb(after.rss)} MiB`);

  // Memory not explained by the session's cache (its byteLength grows when a rebuilt cache regrows
  // past its capacity): at most the other copies a policy holds (a shadow) plus slack, and no creep.
  const other = (s: Sample) => over(s) - s.cache;
  const maxCache = Math.max(...samples.map((s) => s.cache));
  const peak = Math.max(...samples.map(over));
  const bound = spec.copies * maxCache + SLACK;
  const otherPeak = Math.max(...samples.map(other));
  const settled = samples.find((s) => s.length > threshold + 1) ?? samples[0]!;
  const creep = other(samples[samples.length - 1]!) - other(settled);
  const ok = peak <= bound && otherPeak <= (spec.copies - 1) * maxCache + SLACK && creep <= SLACK && over(after) <= SLACK;
  console.log(
    `${ok ? 'PASS' : 'FAIL'} ${spec.label}: peak ${mb(peak)} MiB over baseline ≤ ${spec.copies} × cache ${mb(maxCache)} MiB + ${mb(SLACK)} MiB = ${mb(bound)} MiB; ` +
      `beyond the session's cache at most ${mb(otherPeak)} MiB, growing ${mb(creep)} MiB from the crossing to the end (≤ ${mb(SLACK)} MiB); after dispose ${mb(over(after))} MiB`,
  );
  return ok;
}

/** (name, policy, copies) per run; `--policies` picks among them by name. */
type SoakRuns = readonly (readonly [name: string, policy: () => CachePolicy, copies: number])[];

/** Soaks each wanted run, labelled `part, name`, on the reference backend over the checkpoint in `dir`. */
async function soakCheckpoint(dir: string, part: string, runs: SoakRuns, lengths: Pick<RunSpec, 'promptLength' | 'total' | 'every'>): Promise<boolean> {
  const { config, weights } = await loadCheckpoint(dir);
  const backend = new ReferenceBackend(config, weights);
  await weights.close();
  let ok = true;
  for (const [name, policy, copies] of runs) {
    if (!wanted(name)) continue;
    ok = (await soak({ label: `${part}, ${name}`, backend, policy, copies, ...lengths })) && ok;
  }
  return ok;
}

console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}, gc ${gc ? 'exposed' : 'not exposed'}`);
const root = await mkdtemp(join(tmpdir(), 'ropeswitch-soak-'));
let allOk = true;
try {
  const only = values.only;
  if (only === undefined || only === 'longrope') {
    const dir = join(root, 'longrope');
    await makeTinyModel(dir, { seed: 1, originalMax: 4096, maxPositions: 131072, layers: 2, hidden: 64, heads: 4, kvHeads: 2, vocab: 128 });
    const runs: SoakRuns = [
      ['stale', stale, 1],
      ['re-prefill', rePrefill, 2],
      ['shadow-prefill', () => shadowPrefill(), 2],
    ];
    allOk = (await soakCheckpoint(dir, 'LongRoPE', runs, { promptLength: 4000, total: TOTAL, every: EVERY })) && allOk;
  }
  if (only === undefined || only === 'dynamic') {
    const dir = join(root, 'dynamic');
    await writeRandomCheckpoint(
      dir,
      { ...TINY_LLAMA, rope_theta: 10000, rms_norm_eps: 1e-5, tie_word_embeddings: true, rope_scaling: { type: 'dynamic', factor: 16 } },
      { seed: 2 },
    );
    const runs: SoakRuns = [
      ['stale', stale, 1],
      ['re-prefill (a full re-prefill at every step past 256)', rePrefill, 2],
    ];
    allOk = (await soakCheckpoint(dir, 'dynamic NTK', runs, { promptLength: 200, total: DYNAMIC_TOTAL, every: DYNAMIC_EVERY })) && allOk;
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
console.log(`\n${allOk ? 'PASS' : 'FAIL'}: memory bounded by the caches held in every run`);
process.exitCode = allOk ? 0 : 1;
