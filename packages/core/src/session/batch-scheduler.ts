import type { Backend } from '../backend/backend.js';
import { SessionError } from '../errors.js';
import { type PolicyBackend, isPolicyBackend, wrapBackend } from '../policy/wrap-backend.js';
import { Session, type SessionOptions } from './session.js';
import { type BatchSchedulerStats, type StepLimits, StepQueue } from './step-queue.js';

export interface BatchSchedulerOptions {
  /** Most rows in one backend step, every sequence's and what their policies add (default: the backend's `maxRows`, at most 32). */
  readonly maxRows?: number;
  /** Most tokens in one backend step, decode rows and prompt chunks together (default 512); a forward larger than this runs alone. */
  readonly maxTokens?: number;
  /** Most forwards waiting for a step (default 256); one more is refused with `SessionError` `queue-full`. */
  readonly maxQueue?: number;
  /** Prompt chunk size of the scheduler's sessions (default half of `maxTokens`), so long prompts interleave with decode steps. */
  readonly prefillChunk?: number;
}

/**
 * Continuous batching for many sequences on one model: each {@link session} is an ordinary
 * {@link Session} (prefill, forward, `generate()`), and while several of them wait for a forward,
 * one backend step runs them all, one row per sequence plus whatever rows their policies add (a
 * shadow chunk, a re-prefill), within `maxRows` and a token budget per step, oldest first. Long
 * prompts run in chunks (`prefillChunk`) between other sequences' decode rows.
 *
 * The policies are the wrapped backend's and decide per row, as they always do: every sequence
 * gets its own regime, so one sequence crossing the threshold never changes another's (the
 * contamination serving engines that pick a regime per batch have). Each sequence's results equal
 * its run alone, bit for bit where the backend's rows are independent (reference backend) and
 * within float rounding otherwise.
 *
 * ```ts
 * const scheduler = new BatchScheduler(wrapBackend(backend, shadowPrefill()), { maxRows: 8 });
 * const outputs = await Promise.all(prompts.map((p) => generate(scheduler.session(), p, { maxNewTokens: 64 })));
 * await scheduler.close();
 * ```
 */
export class BatchScheduler {
  /** The backend the scheduler's sessions run on: the given chain over the step queue. */
  readonly backend: PolicyBackend;
  private readonly queue: StepQueue;
  private readonly prefillChunk: number;

  /** @throws SessionError `bad-option` for a limit that is not a positive integer. */
  constructor(backend: Backend, options: BatchSchedulerOptions = {}) {
    const base = isPolicyBackend(backend) ? backend.base : backend;
    const limits: StepLimits = {
      maxRows: positive('maxRows', options.maxRows, Math.min(32, base.capabilities.maxRows)),
      maxTokens: positive('maxTokens', options.maxTokens, 512),
      maxQueue: positive('maxQueue', options.maxQueue, 256),
    };
    this.prefillChunk = positive('prefillChunk', options.prefillChunk, Math.max(1, Math.floor(limits.maxTokens / 2)));
    this.queue = new StepQueue(base, limits);
    this.backend = isPolicyBackend(backend) ? wrapBackend({ schedule: backend.schedule }, this.queue, ...backend.policies) : wrapBackend(this.queue);
  }

  /** A new sequence whose forwards go through the scheduler. Dispose it when the sequence ends. */
  session(options: Omit<SessionOptions, 'schedule'> = {}): Session {
    return new Session(this.backend, { chunkSize: this.prefillChunk, ...options });
  }

  /** Steps, rows and tokens run so far, the fullest step and the longest queue. */
  get stats(): BatchSchedulerStats {
    return this.queue.stats;
  }

  /** Forwards waiting for a step now. */
  get waiting(): number {
    return this.queue.waiting;
  }

  /**
   * Stops taking forwards: the waiting ones are rejected with `SessionError` `scheduler-closed`
   * (their sequences keep what they had); resolves once the running step is done. The backend
   * stays open: it is the caller's to dispose.
   */
  close(): Promise<void> {
    return this.queue.close();
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new SessionError('bad-option', `BatchScheduler: ${name} must be a positive integer; got ${value}`);
  return value;
}
