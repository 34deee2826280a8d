import { readFileSync } from 'node:fs';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type Backend, createRopeSchedule, greedyNoCache, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { type PolicyName, policyByName } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CopyEvaluation, copyCrossingStep, copyExample, copyExamples, evaluateCopyTask, scoreCopy } from '../packages/cli/src/index.js';
import { trainedDir } from './support/fixtures.js';

// Task accuracy on the model trained the LongRoPE way (test/fixtures/trained/copy-longrope/README.md):
// copy n content tokens after [SEP], greedy, exactly n + 1 new tokens. For n = 40, 50, 60 the
// answer crosses L = 64 part-way, so a stale cache shows up as wrong copies, not only as logits.

/** What HF produced for one example of eval.json (`examples`). */
interface HfCopyOutput {
  tokens: number[];
  copy_correct: number[];
  eos_ok: boolean;
}
interface EvalJson {
  table: Record<string, { prompt_len: number; crossing_step: number | null }>;
  examples: Record<string, ({ x: number[]; prompt: number[] } & Record<'a_generate' | 'b_stale' | 'c_long_always', HfCopyOutput>)[]>;
}
const evalJson = JSON.parse(readFileSync(`${trainedDir}eval.json`, 'utf8')) as EvalJson;

const N_VALUES = [40, 50, 60] as const;
const SEQUENCES = 50;
const SEED = 20240913;
const POLICIES: readonly PolicyName[] = ['re-prefill', 'shadow-prefill', 'pre-estimate', 'rerotate', 'stale'];

let backend: Backend;
let L: number;
beforeAll(async () => {
  const { config, weights } = await loadCheckpoint(trainedDir);
  backend = new ReferenceBackend(config, weights);
  L = createRopeSchedule(config.rope).threshold!;
});

/** One evaluation per (policy, n), computed on first use: tests share them and may run in any subset. */
const evaluations = new Map<string, Promise<CopyEvaluation>>();
function evaluate(policy: PolicyName, n: number): Promise<CopyEvaluation> {
  const key = `${policy} n=${n}`;
  let run = evaluations.get(key);
  if (!run) {
    run = evaluateCopyTask(wrapBackend(backend, policyByName(policy)), copyExamples(n, SEQUENCES, SEED), L);
    evaluations.set(key, run);
  }
  return run;
}

afterAll(async () => {
  const fmt = (x: number | undefined) => (x === undefined ? '–' : x.toFixed(4));
  const lines = ['| policy | n | token acc | pre-crossing | post-crossing | exact | EOS |', '|---|---|---|---|---|---|---|'];
  for (const policy of POLICIES) {
    for (const n of N_VALUES) {
      const run = evaluations.get(`${policy} n=${n}`);
      if (!run) continue;
      const a = (await run).accuracy;
      lines.push(`| ${policy} | ${n} | ${fmt(a.tokenAcc)} | ${fmt(a.preCrossingAcc)} | ${fmt(a.postCrossingAcc)} | ${a.exactMatch}/${a.sequences} | ${a.eosCorrect}/${a.sequences} |`);
    }
  }
  console.log(`copy-longrope, ${SEQUENCES} sequences per n, reference backend:\n${lines.join('\n')}`);
});

describe.each(N_VALUES)('copy task, n = %i (50 seeded sequences)', (n) => {
  it('the answer crosses L where eval.json says (the post-crossing split is the fixture\'s)', () => {
    const [example] = copyExamples(n, 1, SEED);
    const row = evalJson.table[String(n)]!;
    expect(example!.prompt).toHaveLength(row.prompt_len);
    expect(copyCrossingStep(example!, L)).toBe(row.crossing_step);
  });

  it('rePrefill copies: token accuracy ≥ 0.99, after the crossing too; its mistakes are the model\'s own (no-cache oracle)', async () => {
    const { accuracy, answers, scores } = await evaluate('re-prefill', n);
    expect(accuracy.tokenAcc).toBeGreaterThanOrEqual(0.99);
    expect(accuracy.postCrossingAcc).toBeGreaterThanOrEqual(0.99);
    // A greedy model that skips one token gets the rest of its copy wrong: check that each wrong
    // answer is exactly what the no-cache oracle generates, so the policy is not to blame.
    const examples = copyExamples(n, SEQUENCES, SEED);
    for (const i of scores.flatMap((sc, k) => (sc.exactMatch ? [] : [k]))) {
      const oracle = await greedyNoCache(backend, examples[i]!.prompt, { maxNewTokens: n + 1 });
      expect(answers[i], `sequence ${i}`).toEqual(oracle.tokens);
    }
  });

  it('shadowPrefill copies like rePrefill: token accuracy ≥ 0.99, the same answers', async () => {
    const shadow = await evaluate('shadow-prefill', n);
    expect(shadow.accuracy.tokenAcc).toBeGreaterThanOrEqual(0.99);
    expect(shadow.answers).toEqual((await evaluate('re-prefill', n)).answers);
  });

  it('stale collapses on the tokens predicted after the crossing (post-crossing accuracy < 0.1) but not before', async () => {
    const { accuracy } = await evaluate('stale', n);
    expect(accuracy.postCrossingAcc).toBeLessThan(0.1);
    expect(accuracy.preCrossingAcc).toBeGreaterThanOrEqual(0.99);
  });

  it('preEstimate (long factors from the first token, the plan crosses) copies after the crossing: ≥ 0.99', async () => {
    const { accuracy } = await evaluate('pre-estimate', n);
    expect(accuracy.postCrossingAcc).toBeGreaterThanOrEqual(0.99);
  });

  it("rerotate recovers little: post-crossing accuracy between stale's and rePrefill's", async () => {
    const rotated = (await evaluate('rerotate', n)).accuracy;
    const exact = (await evaluate('re-prefill', n)).accuracy;
    const kept = (await evaluate('stale', n)).accuracy;
    expect(rotated.postCrossingAcc!).toBeLessThan(exact.postCrossingAcc!);
    expect(rotated.postCrossingAcc!).toBeGreaterThan(kept.postCrossingAcc!);
  });
});

describe("eval.json's example outputs (n = 60)", () => {
  const examples = evalJson.examples['60']!;

  it('scoreCopy scores HF\'s outputs as eval.json does (per-token correctness, EOS)', () => {
    for (const ex of examples) {
      expect(copyExample(ex.x).prompt).toEqual(ex.prompt);
      for (const policy of ['a_generate', 'b_stale', 'c_long_always'] as const) {
        const out = ex[policy];
        const score = scoreCopy(copyExample(ex.x), out.tokens, L);
        expect(score.tokenCorrect).toBe(out.copy_correct.reduce((a, b) => a + b, 0));
        expect(score.eosCorrect).toBe(out.eos_ok);
      }
    }
  });

  it('rePrefill, stale and preEstimate answer what HF generate(), the HF stale loop and long-factors-from-the-start answered', async () => {
    const answers = async (policy: PolicyName) =>
      (await evaluateCopyTask(wrapBackend(backend, policyByName(policy)), examples.map((ex) => copyExample(ex.x)), L)).answers;
    expect(await answers('re-prefill')).toEqual(examples.map((ex) => ex.a_generate.tokens));
    expect(await answers('stale')).toEqual(examples.map((ex) => ex.b_stale.tokens));
    expect(await answers('pre-estimate')).toEqual(examples.map((ex) => ex.c_long_always.tokens));
  });
});
