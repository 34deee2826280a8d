import type { Backend } from '../backend/backend.js';
import { SessionError } from '../errors.js';
import type { PolicyEvent } from '../policy/policy-events.js';
import { type Sampler, type SamplingOptions, createSampler } from './sampler.js';
import { Session } from './session.js';
import type { TextTokenizer } from '../tokenizer/text-tokenizer.js';

export interface GenerateOptions {
  /** Most tokens to choose (a positive integer). The planned length policies see is session length + prompt + this. */
  readonly maxNewTokens: number;
  /** Stop right after choosing one of these ids (it is the last of `tokens`). Not allowed with `teacherTokens`. */
  readonly stopIds?: readonly number[];
  /** Checked before every forward and passed to each: an abort rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Streaming: called with each chosen token as soon as it is chosen, `step` from 0. */
  readonly onToken?: (token: number, step: number) => void;
  /** How tokens are chosen; absent (or `temperature: 0`) means greedy, first index on ties. */
  readonly sampling?: SamplingOptions;
  /** Run the prompt in forwards of at most this many tokens (every chunk under the whole prompt's regime). */
  readonly chunkSize?: number;
  /** Called with each event a policy reports during this call, as the forward that reported it returns. */
  readonly onEvent?: (event: PolicyEvent) => void;
  /** Keep every step's logits in the result (default `true`; one `[vocab]` array per step, so turn it off for long runs on big vocabularies). */
  readonly collectLogits?: boolean;
  /**
   * Teacher forcing: feed these tokens, one per step, instead of the chosen ones, for exactly
   * `teacherTokens.length` steps (at most `maxNewTokens`). Step 0 scores the prompt's last
   * position; step i scores the position after `teacherTokens[i - 1]`, so the logits line up step
   * by step with a run that generated `teacherTokens`. The last teacher token is never fed.
   */
  readonly teacherTokens?: ArrayLike<number>;
  /** Text in and out: a string prompt is encoded with it, and the result carries the decoded `text`. */
  readonly tokenizer?: TextTokenizer;
}

/** Why a generation stopped. */
export type GenerateStopReason = 'max-new-tokens' | 'stop-id' | 'teacher-tokens';

export interface GenerateResult {
  /**
   * The token chosen at each step (greedy or sampled), stop id included. With `teacherTokens`
   * these are the model's choices, not the teacher's. The last one has not been run through the
   * model: a next turn on the same session starts its prompt with it.
   */
  readonly tokens: number[];
  /** `logits[i]`: the distribution step i chose from (`[vocab]`), as the model computed it; empty when `collectLogits` is false. */
  readonly logits: Float32Array[];
  /** Events policies reported during this call, oldest first. */
  readonly events: PolicyEvent[];
  /** `max-new-tokens`: ran all its steps; `stop-id`: chose a stop id; `teacher-tokens`: fed every teacher token. */
  readonly stoppedBy: GenerateStopReason;
  /** `tokens` decoded, when a `tokenizer` was given. */
  readonly text?: string;
}

/**
 * Generates after `input` (token ids, or text with `options.tokenizer`): prefill, then per step
 * choose a token (sampler), stream it, check the stopping criteria, and feed it (or the teacher's
 * token) back.
 *
 * With a {@link Backend}, a fresh {@link Session} runs the call and is disposed at the end, also
 * on error. With a Session, the call continues it (multi-turn) and leaves it open; after an error
 * or abort it holds what it held before the failed forward, and stays usable. Its own `onEvent`
 * still hears every event; `options.onEvent` hears this call's.
 *
 * ```ts
 * const model = wrapBackend(backend, rePrefill());
 * const { tokens, events } = await generate(model, prompt, { maxNewTokens: 64, stopIds: [eos] });
 * ```
 *
 * @throws SessionError for bad options (`no-tokenizer`, `bad-max-new-tokens`, `bad-stop-ids`, `bad-teacher-tokens`,
 *   `empty-input`, the sampler's codes) before anything runs; the signal's reason when aborted;
 *   whatever the backend or a policy throws.
 */
export async function generate(target: Backend | Session, input: ArrayLike<number> | string, options: GenerateOptions): Promise<GenerateResult> {
  const { tokenizer } = options;
  if (typeof input === 'string' && !tokenizer) {
    throw new SessionError('no-tokenizer', 'a text prompt needs options.tokenizer (loadCheckpoint(dir).tokenizer when the folder has a tokenizer.json)');
  }
  const prompt = typeof input === 'string' ? tokenizer!.encode(input) : input;
  const result = await generateIds(target, prompt, options);
  return tokenizer ? { ...result, text: tokenizer.decode(result.tokens) } : result;
}

async function generateIds(target: Backend | Session, prompt: ArrayLike<number>, options: GenerateOptions): Promise<GenerateResult> {
  const backend = target instanceof Session ? target.backend : target;
  const plan = planGeneration(prompt, options, backend.config.vocabSize);
  const sampler = createSampler(options.sampling);
  if (target instanceof Session) return decode(target, prompt, options, plan, sampler, options.onEvent);
  // A fresh session reports events through its own callback; a given one is forwarded its new events below.
  const session = new Session(target, options.onEvent ? { onEvent: options.onEvent } : {});
  try {
    return await decode(session, prompt, options, plan, sampler, undefined);
  } finally {
    session.dispose();
  }
}

/** The checked options: how many steps at most, what stops early, what is fed. */
interface GenerationPlan {
  readonly steps: number;
  readonly stopIds: ReadonlySet<number>;
  readonly teacher: Int32Array | undefined;
}

function planGeneration(prompt: ArrayLike<number>, options: GenerateOptions, vocabSize: number): GenerationPlan {
  if (prompt === null || typeof prompt !== 'object' || typeof prompt.length !== 'number' || prompt.length === 0) {
    throw new SessionError('empty-input', 'generate needs a prompt of at least one token id');
  }
  const max = options.maxNewTokens;
  if (!Number.isInteger(max) || max < 1) throw new SessionError('bad-max-new-tokens', `maxNewTokens must be a positive integer; got ${max}`);
  const stopIds = options.stopIds ?? [];
  if (!Array.isArray(stopIds) || !stopIds.every((id) => Number.isInteger(id))) {
    throw new SessionError('bad-stop-ids', 'stopIds must be an array of integer token ids');
  }
  const forced = options.teacherTokens;
  if (forced === undefined) return { steps: max, stopIds: new Set(stopIds), teacher: undefined };
  if (stopIds.length > 0) {
    throw new SessionError('bad-stop-ids', 'stopIds do not apply with teacherTokens: a teacher-forced run takes exactly teacherTokens.length steps');
  }
  if (typeof forced !== 'object' || forced === null || typeof forced.length !== 'number' || forced.length < 1 || forced.length > max) {
    throw new SessionError('bad-teacher-tokens', `teacherTokens must hold 1 to maxNewTokens (${max}) token ids`);
  }
  const teacher = new Int32Array(forced.length);
  for (let i = 0; i < forced.length; i++) {
    const id = forced[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new SessionError('bad-teacher-tokens', `teacherTokens[${i}] = ${id} is not a token id in [0, ${vocabSize})`);
    }
    teacher[i] = id;
  }
  return { steps: teacher.length, stopIds: new Set(), teacher };
}

async function decode(
  session: Session,
  prompt: ArrayLike<number>,
  options: GenerateOptions,
  plan: GenerationPlan,
  sampler: Sampler,
  forwardEvents: ((event: PolicyEvent) => void) | undefined,
): Promise<GenerateResult> {
  const { signal } = options;
  const firstEvent = session.events.length;
  let reported = firstEvent;
  const reportEvents = (): void => {
    if (!forwardEvents) return;
    for (const all = session.events; reported < all.length; reported++) forwardEvents(all[reported]!);
  };
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  const collect = options.collectLogits ?? true;
  let stoppedBy: GenerateStopReason = plan.teacher ? 'teacher-tokens' : 'max-new-tokens';
  signal?.throwIfAborted();
  // Prepare: the whole prompt in one regime, with the length this call can reach for policies to plan by.
  let scores = await session.prefill(prompt, {
    plannedLength: session.length + prompt.length + options.maxNewTokens,
    ...(options.chunkSize !== undefined ? { chunkSize: options.chunkSize } : {}),
    ...(signal ? { signal } : {}),
  });
  reportEvents();
  for (let step = 0; ; step++) {
    const token = sampler.sample(scores);
    tokens.push(token);
    if (collect) logits.push(scores);
    options.onToken?.(token, step);
    if (plan.stopIds.has(token)) {
      stoppedBy = 'stop-id';
      break;
    }
    if (step + 1 === plan.steps) break;
    signal?.throwIfAborted();
    scores = await session.forward([plan.teacher ? plan.teacher[step]! : token], signal ? { signal } : {});
    reportEvents();
  }
  return { tokens, logits, events: session.events.slice(firstEvent), stoppedBy };
}
