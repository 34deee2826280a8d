// What a lower weight precision costs in quality, measured against float32 weights: teacher-forced
// logits over one stream, and the copy task of every policy on the trained model. Shared by the
// precision measurements (scripts/measure-quantization.ts: onnxruntime int8 / int4 exports;
// scripts/measure-weight-dtypes.ts: the reference backend's weight dtypes).
import { cpus } from 'node:os';
import { type Backend, SeededRandom, argmax, createRopeSchedule, generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { POLICY_NAMES, policyByName } from '@ropeswitch/policies';
import { TRAINED_MODEL_DIR, builtinModelDir } from '../../packages/cli/src/backends.js';
import { copyExamples, evaluateCopyTask } from '../../packages/cli/src/bench/copy-task.js';
import { klDivergence } from '../../packages/cli/src/bench/logit-metrics.js';
import { TASK_COPY_LENGTHS, TASK_SEED } from '../../packages/cli/src/bench/task-scenario.js';

/** Teacher-forced logits of `stream` (prompt = its first token, then one forced token per step). */
export async function forcedLogits(backend: Backend, stream: readonly number[]): Promise<Float32Array[]> {
  const result = await generate(backend, stream.slice(0, 1), { maxNewTokens: stream.length - 1, teacherTokens: stream.slice(1) });
  return result.logits;
}

/**
 * Table rows `| label | precision | steps | top-1 agreement | mean KL | max KL | max |Δlogit| | ms/step | note |`,
 * the first for `base` (the float32 run), then one per other entry of `backends`, each against it.
 */
export async function logitRows(label: string, backends: Readonly<Record<string, Backend>>, base: string, stream: readonly number[], note: (name: string) => string = () => ''): Promise<string[]> {
  let t0 = performance.now();
  const ref = await forcedLogits(backends[base]!, stream);
  const rows = [`| ${label} | ${base} | ${ref.length} | — | — | — | — | ${((performance.now() - t0) / ref.length).toFixed(1)} | ${note(base)} |`];
  for (const [name, backend] of Object.entries(backends)) {
    if (name === base) continue;
    t0 = performance.now();
    const got = await forcedLogits(backend, stream);
    const ms = (performance.now() - t0) / got.length;
    let agree = 0;
    let kl = 0;
    let worst = 0;
    let diff = 0;
    got.forEach((q, i) => {
      const k = Math.max(0, klDivergence(ref[i]!, q));
      kl += k;
      worst = Math.max(worst, k);
      for (let j = 0; j < q.length; j++) diff = Math.max(diff, Math.abs(q[j]! - ref[i]![j]!));
      if (argmax(ref[i]!) === argmax(q)) agree++;
    });
    rows.push(`| ${label} | ${name} | ${got.length} | ${((100 * agree) / got.length).toFixed(1)}% | ${(kl / got.length).toExponential(2)} | ${worst.toExponential(2)} | ${diff.toExponential(2)} | ${ms.toFixed(1)} | ${note(name)} |`);
  }
  return rows;
}

/** The header of {@link logitRows}' table. */
export const LOGIT_TABLE_HEADER = ['| model | weights | steps | top-1 agreement | mean KL (nats) | max KL | max |Δlogit| | ms/step | |', '|---|---|---:|---:|---:|---:|---:|---:|---|'];

/**
 * Copy-task token accuracy of every policy under every entry of `backends` (the trained model):
 * rows `| policy | precision | acc (post-crossing acc) per n |`, `sequences` seeded sequences per n.
 */
export async function copyTaskRows(backends: Readonly<Record<string, Backend>>, sequences: number, threshold: number): Promise<string[]> {
  const rows = [`| policy | weights | ${TASK_COPY_LENGTHS.map((n) => `n = ${n}`).join(' | ')} |`, `|---|---|${TASK_COPY_LENGTHS.map(() => '---').join('|')}|`];
  for (const policy of POLICY_NAMES) {
    for (const [name, backend] of Object.entries(backends)) {
      const cells: string[] = [];
      for (const n of TASK_COPY_LENGTHS) {
        const { accuracy } = await evaluateCopyTask(wrapBackend(backend, policyByName(policy)), copyExamples(n, sequences, TASK_SEED), threshold);
        cells.push(`${accuracy.tokenAcc.toFixed(3)} (${accuracy.postCrossingAcc?.toFixed(3) ?? '—'})`);
      }
      rows.push(`| ${policy} | ${name} | ${cells.join(' | ')} |`);
    }
  }
  return rows;
}

/** One precision study: how to open a model under every precision, and how to label each table row. */
export interface PrecisionStudy {
  /** The model in `dir` under each precision, keyed by name (`base` among them). */
  openAll(dir: string): Promise<Readonly<Record<string, Backend>>>;
  /** The precision the others are compared against (`float32`). */
  readonly base: string;
  /** What the first table compares against, for its heading. */
  readonly against: string;
  /** A note per precision in the logit table (e.g. how many matrices were quantized). */
  readonly note?: (name: string, backends: Readonly<Record<string, Backend>>) => string;
  readonly threads: number | undefined;
  readonly streamLength: number;
  readonly sequences: number;
  /** A real-shape checkpoint to compare on too. */
  readonly phi3?: string;
  readonly noTask?: boolean;
}

/**
 * Prints both tables of a precision study: logits under each precision against `base`,
 * teacher-forced over one stream, on `builtin`, the trained copy model and (with `phi3`) a
 * real-shape checkpoint; then the copy-task accuracy of every policy on the trained model under each.
 */
export async function runPrecisionStudy(study: PrecisionStudy): Promise<void> {
  const configOf = async (dir: string) => {
    const checkpoint = await loadCheckpoint(dir);
    await checkpoint.weights.close();
    return checkpoint.config;
  };
  const compare = async (label: string, dir: string, stream: readonly number[]) => {
    const backends = await study.openAll(dir);
    try {
      return await logitRows(label, backends, study.base, stream, (name) => study.note?.(name, backends) ?? '');
    } finally {
      for (const b of Object.values(backends)) await b.dispose();
    }
  };
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}; threads ${study.threads ?? 'default'}\n`);
  const random = new SeededRandom(7);
  const seeded = (vocab: number) => Array.from({ length: study.streamLength }, () => random.int(vocab));
  const tables: string[] = [];
  const builtin = await builtinModelDir();
  tables.push(...(await compare('builtin (make-tiny, h64, 2L)', builtin, seeded((await configOf(builtin)).vocabSize))));
  // The trained model's stream: a copy-task prompt and its answer (n = 50, across L = 64).
  const [example] = copyExamples(50, 1, TASK_SEED);
  tables.push(...(await compare('trained copy model (h128, 4L)', TRAINED_MODEL_DIR, [...example!.prompt, ...example!.answer])));
  if (study.phi3) {
    const config = await configOf(study.phi3);
    tables.push(...(await compare(`Phi-3 shape (h${config.hiddenSize}, ${config.numLayers}L)`, study.phi3, seeded(config.vocabSize))));
  }
  console.log(`Logits against ${study.against}, teacher-forced (step i sees the same prefix in every run):\n`);
  for (const r of [...LOGIT_TABLE_HEADER, ...tables]) console.log(r);

  if (!study.noTask) {
    const backends = await study.openAll(TRAINED_MODEL_DIR);
    const threshold = createRopeSchedule(backends[study.base]!.config.rope).threshold ?? 0;
    console.log(`\nCopy-task token accuracy on the trained model (${study.sequences} sequences per n; in brackets: tokens predicted past L = ${threshold}):\n`);
    for (const r of await copyTaskRows(backends, study.sequences, threshold)) console.log(r);
    for (const b of Object.values(backends)) await b.dispose();
  }
}
