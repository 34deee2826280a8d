import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Backend, wrapBackend } from '@ropeswitch/core';
import { policyByName } from '@ropeswitch/policies';
import type { TaskRun } from './bench-report.js';
import { copyExamples, evaluateCopyTask } from './copy-task.js';

/** Copy lengths of the task scenario: with L = 64 each answer crosses L part-way (prompt n + 2 ≤ L < n + 2 + n). */
export const TASK_COPY_LENGTHS = [40, 50, 60] as const;
/** The seed of the task's sequences (the trained-model tests use the same ones). */
export const TASK_SEED = 20240913;

/** HF transformers' accuracy per copy length n and policy name, from the model folder's eval files. */
export type HfTaskFigures = ReadonlyMap<string, TaskRun['hf']>;

interface EvalMetrics {
  readonly token_acc?: number;
  readonly post_crossing_acc?: number;
}
interface EvalTable {
  readonly table?: Record<string, Record<string, EvalMetrics | unknown>>;
}

/**
 * Which of HF's runs (eval.json, eval_rerotate.json) is the same kind of policy as ours:
 * `a_generate` re-prefills at the crossing, `b_stale` keeps the cache, `c_long_always` uses long
 * factors from the first token, `e_rerotate` rotates the cached keys at the crossing.
 */
const HF_RUN_OF: Readonly<Record<string, { file: string; run: string }>> = {
  're-prefill': { file: 'eval.json', run: 'a_generate' },
  'shadow-prefill': { file: 'eval.json', run: 'a_generate' },
  stale: { file: 'eval.json', run: 'b_stale' },
  'warn-only': { file: 'eval.json', run: 'b_stale' },
  'pre-estimate': { file: 'eval.json', run: 'c_long_always' },
  rerotate: { file: 'eval_rerotate.json', run: 'e_rerotate' },
};

/** HF's figures for `policies` at each n, keyed `policy n`; a missing file, run or field gives `null`. */
export async function readHfTaskFigures(modelDir: string, policies: readonly string[]): Promise<HfTaskFigures> {
  const files = new Map<string, EvalTable | undefined>();
  const load = async (file: string): Promise<EvalTable | undefined> => {
    if (!files.has(file)) {
      files.set(file, await readFile(join(modelDir, file), 'utf8').then((text) => JSON.parse(text) as EvalTable, () => undefined));
    }
    return files.get(file);
  };
  const out = new Map<string, TaskRun['hf']>();
  for (const policy of policies) {
    const source = HF_RUN_OF[policy];
    for (const n of TASK_COPY_LENGTHS) {
      const metrics = source ? ((await load(source.file))?.table?.[String(n)]?.[source.run] as EvalMetrics | undefined) : undefined;
      out.set(`${policy} ${n}`, typeof metrics?.token_acc === 'number' ? { tokenAccuracy: metrics.token_acc, postCrossingAccuracy: metrics.post_crossing_acc ?? null } : null);
    }
  }
  return out;
}

/**
 * Copy accuracy of `policy` on the trained model at copy length `n`: `sequences` seeded sequences,
 * greedy, exactly n + 1 new tokens each, scored against the threshold L.
 */
export async function runTask(
  backend: Backend,
  backendName: string,
  policy: string,
  n: number,
  sequences: number,
  threshold: number,
  hf: HfTaskFigures,
): Promise<TaskRun> {
  const examples = copyExamples(n, sequences, TASK_SEED);
  const { accuracy } = await evaluateCopyTask(wrapBackend(backend, policyByName(policy)), examples, threshold);
  return {
    backend: backendName,
    policy,
    n,
    promptTokens: n + 2,
    sequences,
    tokenAccuracy: accuracy.tokenAcc,
    postCrossingAccuracy: accuracy.postCrossingAcc ?? null,
    exactMatch: accuracy.exactMatchRate,
    hf: hf.get(`${policy} ${n}`) ?? null,
  };
}
