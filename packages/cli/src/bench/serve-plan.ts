import { SeededRandom } from '@ropeswitch/core';
import { MAX_ROWS_PER_RUN } from '../backend-flags.js';
import type { ServeShape } from './bench-report.js';

/** Sequences and new tokens of the serve scenario when not given (`--serve-sequences`, `--serve-new-tokens`). */
export const SERVE_DEFAULTS = Object.freeze({ sequences: 8, newTokens: 32 });
/** The most `--serve-sequences` (a scheduler's default `maxRows` is 32; more only lengthens the solo side). */
export const MAX_SERVE_SEQUENCES = 64;
/** The fewest new tokens a sequence of the serve scenario chooses: a crossing needs a decode step after the prompt's. */
export const MIN_SERVE_NEW_TOKENS = 2;

/** What the serve scenario feeds: many sequences sharing a system prompt, arriving one after another, some crossing L. */
export interface ServePlan extends ServeShape {
  /** Seeded prompt ids: the system prompt, then the sequence's own tokens. */
  readonly prompts: readonly (readonly number[])[];
}

/** Sequences of the serve scenario that cross L: every other one, the first included. */
function crossingCount(sequences: number): number {
  return Math.ceil(sequences / 2);
}

/**
 * Rows of the serve scenario's fullest decode step for `sequences` sequences: every sequence's row,
 * and beside each crossing one the row of a shadow copy that keeps pace with it. An onnxruntime
 * export with this many row slots runs that step in one pass over the weights (at most
 * {@link MAX_ROWS_PER_RUN}). It depends on no model, so a backend can be opened with it.
 */
export function serveRowSlots(sequences: number): number {
  return Math.min(MAX_ROWS_PER_RUN, sequences + crossingCount(sequences));
}

/** Why the serve scenario does not fit a model of threshold L and `positions` positions, or `undefined` when it does. */
export function servePlanProblem(threshold: number, positions: number, sequences: number, newTokens: number): string | undefined {
  const shape = serveShape(threshold, sequences, newTokens);
  if (shape.systemTokens < 1) {
    return `the model's threshold L = ${threshold} leaves no room for a shared system prompt with ${sequences} sequences of ${newTokens} new tokens (use fewer sequences or new tokens)`;
  }
  const longest = Math.max(...shape.promptTokens) + newTokens - 1;
  if (longest > positions) return `the longest sequence (${longest} tokens) runs past the model's ${positions} positions`;
  return undefined;
}

/**
 * The serve scenario for a model of threshold L: `sequences` prompts that share a system prompt
 * and differ in length. Every other sequence (the first, third, …) crosses L, each at its own
 * decode step, spread over the `newTokens` steps; the others stay at most L (their prompts below
 * L − newTokens, each a different length). Each sequence's own tokens after the system prompt are
 * at least `newTokens` long. Sequence i arrives after i decode steps of the first one (the last
 * ones together at its last step when there are more sequences than steps), so the first one's
 * prompt is in the prefix cache before the others look for it.
 *
 * @throws Error when {@link servePlanProblem} says the plan does not fit (the command line checks first).
 */
export function planServe(threshold: number, positions: number, sequences: number, newTokens: number, vocabSize: number, seed: number): ServePlan {
  const problem = servePlanProblem(threshold, positions, sequences, newTokens);
  if (problem !== undefined) throw new Error(`bench serve: ${problem}`);
  const shape = serveShape(threshold, sequences, newTokens);
  const random = new SeededRandom(seed ^ 0x73657276);
  const ids = (n: number) => Array.from({ length: n }, () => random.int(vocabSize));
  const system = ids(shape.systemTokens);
  return {
    sequences,
    newTokens,
    ...shape,
    arrivals: Array.from({ length: sequences }, (_, i) => Math.min(i, newTokens - 1)),
    prompts: shape.promptTokens.map((p) => [...system, ...ids(p - shape.systemTokens)]),
  };
}

/** Prompt lengths, crossing steps and the system prompt's length (which may come out < 1: the plan does not fit). */
function serveShape(threshold: number, sequences: number, newTokens: number): Pick<ServePlan, 'systemTokens' | 'promptTokens' | 'crossingSteps'> {
  const crossing = crossingCount(sequences);
  const below = sequences - crossing;
  const gap = Math.max(1, Math.ceil(newTokens / 2));
  const promptTokens: number[] = [];
  const crossingSteps: (number | null)[] = [];
  for (let i = 0; i < sequences; i++) {
    const j = i >> 1;
    if (i % 2 === 0) {
      // Crosses at decode step c: prompt P with P + c = L + 1.
      const c = Math.min(newTokens - 1, Math.max(1, Math.round(((j + 1) * newTokens) / (crossing + 1))));
      promptTokens.push(threshold + 1 - c);
      crossingSteps.push(c);
    } else {
      // The last forward covers P + newTokens − 1 ≤ L tokens, `gap` more room for each one after.
      promptTokens.push(threshold + 1 - newTokens - (j + 1) * gap);
      crossingSteps.push(null);
    }
  }
  const shortest = below > 0 ? threshold + 1 - newTokens - below * gap : Math.min(...promptTokens);
  return { systemTokens: shortest - newTokens, promptTokens, crossingSteps };
}
