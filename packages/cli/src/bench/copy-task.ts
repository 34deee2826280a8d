/**
 * The copy task of the trained model `assets/copy-longrope/` (see its README):
 * example generation, greedy answering through a (policy-wrapped) backend, and the scoring of
 * `eval.json` (token accuracy over the copied span, exact matches, EOS, and the split by whether a
 * token was predicted by a forward longer than the LongRoPE threshold L). Reused by the bench.
 *
 * Indexing used throughout: the answer is generated token by token, step j = 0 … n; step 0 is the
 * prompt's forward (total length S = prompt length), step j the forward that feeds answer token
 * j − 1 (S = prompt length + j). A token is "post-crossing" when S > L for the forward that
 * predicted it.
 */
import { type Backend, SeededRandom, generate } from '@ropeswitch/core';

/** Token ids of the task (`tokens.json`): BOS, SEP, EOS, and the 48 content ids 4 … 51. */
export const COPY_IDS = Object.freeze({ bos: 0, sep: 1, eos: 2, firstContent: 4, contentCount: 48 });

/** One sequence of the task: `[BOS] x1..xn [SEP]` → `x1..xn [EOS]`. */
export interface CopyExample {
  /** x1 … xn. */
  readonly content: readonly number[];
  /** `[BOS] x1..xn [SEP]` (n + 2 tokens). */
  readonly prompt: readonly number[];
  /** `x1..xn [EOS]` (n + 1 tokens): what a perfect model generates. */
  readonly answer: readonly number[];
}

export function copyExample(content: readonly number[]): CopyExample {
  return {
    content: content.slice(),
    prompt: [COPY_IDS.bos, ...content, COPY_IDS.sep],
    answer: [...content, COPY_IDS.eos],
  };
}

/** `count` examples of length `n`, content uniform over the content ids (repeats allowed), reproducible from `seed`. */
export function copyExamples(n: number, count: number, seed: number): CopyExample[] {
  const random = new SeededRandom(seed);
  return Array.from({ length: count }, () =>
    copyExample(Array.from({ length: n }, () => COPY_IDS.firstContent + random.int(COPY_IDS.contentCount))),
  );
}

/**
 * The first answer step whose forward is longer than `threshold` (S = prompt length + step >
 * threshold), or `undefined` when no answer token is predicted past it. eval.json's `crossing_step`.
 */
export function copyCrossingStep(example: CopyExample, threshold: number): number | undefined {
  const step = Math.max(0, threshold + 1 - example.prompt.length);
  return step < example.answer.length ? step : undefined;
}

/** How one generated answer scores. */
export interface CopyScore {
  /** n: tokens of the copied span. */
  readonly copyTokens: number;
  /** Positions j < n where the generated token equals x_{j+1}. */
  readonly tokenCorrect: number;
  /** All n copied correctly. */
  readonly exactMatch: boolean;
  /** Token n (the last generated) is EOS. */
  readonly eosCorrect: boolean;
  /** Copied-span tokens predicted by a forward of ≤ threshold tokens, and how many are right. */
  readonly preCrossingTokens: number;
  readonly preCrossingCorrect: number;
  /** Copied-span tokens predicted by a forward of > threshold tokens, and how many are right. */
  readonly postCrossingTokens: number;
  readonly postCrossingCorrect: number;
  /** Index of the first wrong copied token, `undefined` when all are right. */
  readonly firstErrorIndex: number | undefined;
}

/** Scores `generated` (at least n + 1 tokens, as {@link answerCopyTask} returns) against the example. */
export function scoreCopy(example: CopyExample, generated: readonly number[], threshold: number): CopyScore {
  const n = example.content.length;
  if (generated.length < n + 1) throw new Error(`scoreCopy: ${generated.length} generated tokens for an answer of ${n + 1}`);
  const crossing = copyCrossingStep(example, threshold) ?? Infinity;
  let tokenCorrect = 0;
  let preCrossingTokens = 0;
  let preCrossingCorrect = 0;
  let firstErrorIndex: number | undefined;
  for (let j = 0; j < n; j++) {
    const right = generated[j] === example.content[j];
    if (right) tokenCorrect++;
    else firstErrorIndex ??= j;
    if (j < crossing) {
      preCrossingTokens++;
      if (right) preCrossingCorrect++;
    }
  }
  return {
    copyTokens: n,
    tokenCorrect,
    exactMatch: tokenCorrect === n,
    eosCorrect: generated[n] === COPY_IDS.eos,
    preCrossingTokens,
    preCrossingCorrect,
    postCrossingTokens: n - preCrossingTokens,
    postCrossingCorrect: tokenCorrect - preCrossingCorrect,
    firstErrorIndex,
  };
}

/** eval.json's metrics over a set of sequences. An accuracy over zero tokens is `undefined`. */
export interface CopyAccuracy {
  readonly sequences: number;
  readonly copyTokens: number;
  readonly tokenCorrect: number;
  readonly tokenAcc: number;
  readonly exactMatch: number;
  readonly exactMatchRate: number;
  readonly eosCorrect: number;
  readonly preCrossingTokens: number;
  readonly preCrossingAcc: number | undefined;
  readonly postCrossingTokens: number;
  readonly postCrossingAcc: number | undefined;
  /** Mean index of the first error over the sequences that have one (`undefined` when none has). */
  readonly firstErrorIndexMean: number | undefined;
}

export function summarizeCopy(scores: readonly CopyScore[]): CopyAccuracy {
  const sum = (f: (s: CopyScore) => number): number => scores.reduce((a, s) => a + f(s), 0);
  const ratio = (a: number, b: number): number | undefined => (b > 0 ? a / b : undefined);
  const copyTokens = sum((s) => s.copyTokens);
  const tokenCorrect = sum((s) => s.tokenCorrect);
  const exactMatch = sum((s) => (s.exactMatch ? 1 : 0));
  const preCrossingTokens = sum((s) => s.preCrossingTokens);
  const postCrossingTokens = sum((s) => s.postCrossingTokens);
  const errors = scores.flatMap((s) => (s.firstErrorIndex === undefined ? [] : [s.firstErrorIndex]));
  return {
    sequences: scores.length,
    copyTokens,
    tokenCorrect,
    tokenAcc: ratio(tokenCorrect, copyTokens) ?? 0,
    exactMatch,
    exactMatchRate: ratio(exactMatch, scores.length) ?? 0,
    eosCorrect: sum((s) => (s.eosCorrect ? 1 : 0)),
    preCrossingTokens,
    preCrossingAcc: ratio(sum((s) => s.preCrossingCorrect), preCrossingTokens),
    postCrossingTokens,
    postCrossingAcc: ratio(sum((s) => s.postCrossingCorrect), postCrossingTokens),
    firstErrorIndexMean: ratio(errors.reduce((a, b) => a + b, 0), errors.length),
  };
}

/**
 * Greedy answers, one sequence at a time: exactly n + 1 new tokens per example (no stop on EOS),
 * through `backend` — typically `wrapBackend(reference, policy)`, one per policy, shared by the
 * examples in turn. `generate` passes the planned length prompt + n + 1, as HF `generate` knows it.
 */
export async function answerCopyTask(backend: Backend, examples: readonly CopyExample[]): Promise<number[][]> {
  const answers: number[][] = [];
  for (const example of examples) {
    const result = await generate(backend, example.prompt, { maxNewTokens: example.answer.length, collectLogits: false });
    answers.push(result.tokens);
  }
  return answers;
}

/** One policy's run over a set of examples: the answers, each one's score, and the summary. */
export interface CopyEvaluation {
  readonly answers: number[][];
  readonly scores: CopyScore[];
  readonly accuracy: CopyAccuracy;
}

/** Answers every example through `backend` and scores the answers against the threshold L. */
export async function evaluateCopyTask(backend: Backend, examples: readonly CopyExample[], threshold: number): Promise<CopyEvaluation> {
  const answers = await answerCopyTask(backend, examples);
  const scores = answers.map((a, i) => scoreCopy(examples[i]!, a, threshold));
  return { answers, scores, accuracy: summarizeCopy(scores) };
}
