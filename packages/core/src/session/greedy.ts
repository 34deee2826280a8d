import type { Backend } from '../backend/backend.js';
import { argmax } from './argmax.js';
import { generate } from './generate.js';
import { noCacheForward } from './no-cache-forward.js';
import type { Session } from './session.js';

/** The outcome of a greedy run: the new tokens and the logits each was chosen from. */
export interface GreedyResult {
  readonly tokens: number[];
  /** `logits[i]`: the distribution token i was taken from (`[vocab]`). */
  readonly logits: Float32Array[];
}

export interface GreedyOptions {
  readonly maxNewTokens: number;
  /** Stop after emitting one of these ids (it is included). */
  readonly stopIds?: readonly number[];
  readonly signal?: AbortSignal;
  /** Called after each token (streaming). */
  readonly onToken?: (token: number, step: number) => void;
}

/** Greedy decoding through a session: prefill once, then one token per forward, cache kept ({@link generate} without sampling). */
export async function greedyDecode(session: Session, prompt: ArrayLike<number>, options: GreedyOptions): Promise<GreedyResult> {
  const { tokens, logits } = await generate(session, prompt, options);
  return { tokens, logits };
}

/** Greedy decoding with the no-cache oracle: every step is a full forward over the prefix. */
export async function greedyNoCache(backend: Backend, prompt: ArrayLike<number>, options: GreedyOptions): Promise<GreedyResult> {
  const ids = Array.from(prompt);
  return decodeLoop(options, async (step, last) => {
    if (step > 0) ids.push(last);
    return noCacheForward(backend, ids, options.signal ? { signal: options.signal } : {});
  });
}

async function decodeLoop(
  options: GreedyOptions,
  next: (step: number, last: number) => Promise<Float32Array>,
): Promise<GreedyResult> {
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  const stop = new Set(options.stopIds ?? []);
  let last = -1;
  for (let step = 0; step < options.maxNewTokens; step++) {
    options.signal?.throwIfAborted();
    const l = await next(step, last);
    last = argmax(l);
    tokens.push(last);
    logits.push(l);
    options.onToken?.(last, step);
    if (stop.has(last)) break;
  }
  return { tokens, logits };
}
