import type { Backend, BackendCapabilities, ForwardRequest, ForwardResult } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import { SessionError } from '../errors.js';
import { backendCall } from '../policy/backend-call.js';
import type { RopeRegime } from '../rope/regime.js';

/** How a {@link StepQueue} fills a step. */
export interface StepLimits {
  /** Most rows in one step (the backend's `maxRows` still splits a step into calls). */
  readonly maxRows: number;
  /** Most tokens in one step; a forward larger than this runs alone. */
  readonly maxTokens: number;
  /** Most forwards waiting; one more is refused. */
  readonly maxQueue: number;
}

/** What a batch scheduler's steps have done so far. */
export interface BatchSchedulerStats {
  /** Backend steps run (merged forwards). */
  readonly steps: number;
  /** Forwards submitted and run (each session forward is one, whatever rows its policies added). */
  readonly forwards: number;
  /** Rows and tokens over every step. */
  readonly rows: number;
  readonly tokens: number;
  /** The most rows and forwards one step carried. */
  readonly maxRowsInStep: number;
  readonly maxForwardsInStep: number;
  /** The longest the queue has been. */
  readonly peakQueue: number;
  /** Merged steps that failed and were run again one forward at a time (so only the faulty sequence fails). */
  readonly soloRetries: number;
}

interface ForwardEntry {
  readonly kind: 'forward';
  readonly request: ForwardRequest;
  readonly tokens: number;
  settle(result: ForwardResult | undefined, error?: unknown): void;
}

interface OpEntry {
  readonly kind: 'op';
  readonly run: () => Promise<void>;
  settle(result: undefined, error?: unknown): void;
}

type Entry = ForwardEntry | OpEntry;

const nextMacrotask: () => Promise<void> =
  typeof setImmediate === 'function' ? () => new Promise((r) => setImmediate(r)) : () => new Promise((r) => setTimeout(r, 0));

/**
 * A backend that queues forward calls and runs them in steps: each step merges the waiting forwards
 * (of different sequences) into one call to `base`, within the step's row and token limits, in
 * arrival order (a forward that does not fit is passed over for this step, never for good: the
 * oldest one is always taken). It sits under a policy chain, so every sequence's policies decide
 * for its own rows and only the backend's pass over the weights is shared.
 *
 * A step waits one macrotask before it starts, so the sequences that a finished step resumed have
 * submitted their next forward by then. Other backend work (`rerotateKeys`, `prepareRerotation`)
 * runs between steps, in order, never beside a step. A merged step that fails is run again one
 * forward at a time, so only a faulty sequence fails; an abort rejects its own forward only (a
 * waiting one leaves the queue at once; one that ran is rejected after the step, and the wrapper
 * above crops its rows back off its caches).
 */
export class StepQueue implements Backend {
  readonly name: string;
  readonly config: Backend['config'];
  readonly capabilities: BackendCapabilities;
  rerotateKeys?(cache: KvCache, to: RopeRegime): Promise<void>;
  prepareRerotation?(from: RopeRegime, to: RopeRegime, positions: number): Promise<void>;
  private readonly queue: Entry[] = [];
  private readonly call: (request: ForwardRequest) => Promise<ForwardResult>;
  private draining: Promise<void> | undefined;
  /** Set while {@link drain} loops; cleared in the same turn as its last look at the queue, so a push never finds it stale. */
  private running = false;
  private closedWith: SessionError | undefined;
  private counts = { steps: 0, forwards: 0, rows: 0, tokens: 0, maxRowsInStep: 0, maxForwardsInStep: 0, peakQueue: 0, soloRetries: 0 };

  constructor(
    readonly base: Backend,
    private readonly limits: StepLimits,
  ) {
    this.name = base.name;
    this.config = base.config;
    // The chain above sends whole forwards; this queue splits nothing, and the call below splits over the backend's maxRows.
    this.capabilities = { ...base.capabilities, maxRows: Infinity };
    // Each forward's rows are checked by the wrapper above (so a bad logit fails its own sequence
    // only); checking the merged step too would read every logit twice.
    this.call = backendCall(base, { checkResults: false });
    if (base.rerotateKeys) {
      const rotate = base.rerotateKeys.bind(base);
      this.rerotateKeys = (cache, to) => this.enqueueOp(() => rotate(cache, to));
      if (base.prepareRerotation) {
        const prepare = base.prepareRerotation.bind(base);
        this.prepareRerotation = (from, to, positions) => this.enqueueOp(() => prepare(from, to, positions));
      }
    }
  }

  get stats(): BatchSchedulerStats {
    return { ...this.counts };
  }

  /** Forwards waiting for a step. */
  get waiting(): number {
    return this.queue.length;
  }

  createCache(): KvCache {
    return this.base.createCache();
  }

  forward(request: ForwardRequest): Promise<ForwardResult> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    const { signal } = request;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<ForwardResult>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.queue.indexOf(entry);
        if (i < 0) return; // already running: rejected once the step is done
        this.queue.splice(i, 1);
        entry.settle(undefined, signal!.reason);
      };
      const entry: ForwardEntry = {
        kind: 'forward',
        request,
        tokens: request.rows.reduce((n, r) => n + r.tokens.length, 0),
        settle: (result, error) => {
          signal?.removeEventListener('abort', onAbort);
          if (error !== undefined || result === undefined) reject(error);
          else resolve(result);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.push(entry);
    });
  }

  /** Refuses new work, rejects what waits with `SessionError` `scheduler-closed`, and resolves once the running step is done. */
  async close(): Promise<void> {
    this.closedWith ??= new SessionError('scheduler-closed', 'the batch scheduler was closed: no further forwards run');
    for (const entry of this.queue.splice(0)) entry.settle(undefined, this.closedWith);
    await this.draining;
  }

  dispose(): Promise<void> {
    return this.base.dispose();
  }

  private enqueueOp(run: () => Promise<void>): Promise<void> {
    const refused = this.refusal();
    if (refused) return Promise.reject(refused);
    return new Promise<void>((resolve, reject) => this.push({ kind: 'op', run, settle: (_r, error) => (error !== undefined ? reject(error) : resolve()) }));
  }

  private refusal(): SessionError | undefined {
    if (this.closedWith) return this.closedWith;
    if (this.queue.length >= this.limits.maxQueue) {
      return new SessionError('queue-full', `the batch scheduler's queue holds ${this.queue.length} forwards (maxQueue ${this.limits.maxQueue}): retry later, or raise maxQueue`);
    }
    return undefined;
  }

  private push(entry: Entry): void {
    this.queue.push(entry);
    this.counts.peakQueue = Math.max(this.counts.peakQueue, this.queue.length);
    if (!this.running) {
      this.running = true;
      this.draining = this.drain();
    }
  }

  private async drain(): Promise<void> {
    try {
      await this.drainQueue();
    } finally {
      this.running = false;
    }
  }

  private async drainQueue(): Promise<void> {
    while (this.queue.length > 0) {
      await nextMacrotask();
      const head = this.queue[0];
      if (!head) break;
      if (head.kind === 'op') {
        this.queue.shift();
        await head.run().then(
          () => head.settle(undefined),
          (error: unknown) => head.settle(undefined, error ?? new Error('backend work failed')),
        );
        continue;
      }
      await this.runStep(this.pick());
    }
  }

  /** The forwards of the next step: the oldest, then every later one that fits, up to the next queued op. */
  private pick(): ForwardEntry[] {
    const picked: ForwardEntry[] = [];
    const caches = new Set<KvCache>();
    let rows = 0;
    let tokens = 0;
    for (let i = 0; i < this.queue.length; ) {
      const entry = this.queue[i]!;
      if (entry.kind === 'op') break;
      const mine = entry.request.rows;
      const fits = rows + mine.length <= this.limits.maxRows && tokens + entry.tokens <= this.limits.maxTokens;
      // One sequence's forwards never share a step (a second one waits for the first's cache).
      const disjoint = mine.every((r) => !caches.has(r.cache));
      if (picked.length === 0 || (fits && disjoint)) {
        this.queue.splice(i, 1);
        picked.push(entry);
        for (const r of mine) caches.add(r.cache);
        rows += mine.length;
        tokens += entry.tokens;
      } else {
        i++;
      }
    }
    return picked;
  }

  private async runStep(picked: ForwardEntry[]): Promise<void> {
    const rows = picked.flatMap((e) => e.request.rows);
    this.counts.steps++;
    this.counts.forwards += picked.length;
    this.counts.rows += rows.length;
    this.counts.tokens += picked.reduce((n, e) => n + e.tokens, 0);
    this.counts.maxRowsInStep = Math.max(this.counts.maxRowsInStep, rows.length);
    this.counts.maxForwardsInStep = Math.max(this.counts.maxForwardsInStep, picked.length);
    try {
      // No signal for the merged call: each forward's own is checked before and after it.
      const result = await this.call({ rows });
      let at = 0;
      for (const e of picked) {
        const n = e.request.rows.length;
        finish(e, { rows: result.rows.slice(at, at + n) });
        at += n;
      }
    } catch (error) {
      // The failed call left every cache as it was: run each forward alone, so only a faulty one fails.
      if (picked.length === 1) return picked[0]!.settle(undefined, error);
      this.counts.soloRetries++;
      for (const e of picked) {
        if (e.request.signal?.aborted) {
          e.settle(undefined, e.request.signal.reason);
          continue;
        }
        await this.call({ rows: e.request.rows }).then(
          (result) => finish(e, result),
          (soloError: unknown) => e.settle(undefined, soloError),
        );
      }
    }
  }
}

/** Settles a forward that ran: its result, or its signal's reason when it was aborted meanwhile. */
function finish(entry: ForwardEntry, result: ForwardResult): void {
  const { signal } = entry.request;
  if (signal?.aborted) entry.settle(undefined, signal.reason);
  else entry.settle(result);
}
