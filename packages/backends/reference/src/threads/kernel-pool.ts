import { BackendError } from '@ropeswitch/core';
import type { WasmMemory, WasmModule } from '../kernels/wasm/webassembly-api.js';
import { Command, Control, MAX_CHUNKS, MAX_POOL_ARGS, POOL_KERNELS, type PoolKernel, claimChunks } from './pool-worker-source.js';
import type { PoolWorker, ThreadSupport } from './thread-support.js';

/** A chunk [lo, hi) of a job and the scratch of the thread computing it. */
export interface ThreadPart {
  readonly lo: number;
  readonly hi: number;
  readonly scratch: number;
}

/** Runs a chunk of a kernel call on the calling thread (the main thread claims chunks like the workers). */
export type LocalKernel = (kernel: PoolKernel, arena: number, args: readonly number[], part: ThreadPart) => void;

/** A kernel call split into chunks for the pool. */
export interface PoolJob {
  readonly kernel: PoolKernel;
  /** Index of the memory whose instances run it. */
  readonly arena: number;
  /** The kernel's leading arguments. */
  readonly args: readonly number[];
  /** The range [0, size) split into `chunks` near-equal chunks. */
  readonly size: number;
  readonly chunks: number;
  /** Per thread (0: the main thread), its scratch address. */
  readonly scratch: readonly number[];
}

/** How long a worker spins on the sequence after a job before it sleeps (ms). */
const WORKER_SPIN_MS = 0.5;
/** How long the main thread spins for the workers' parts before it waits asynchronously (ms): past it, a dead worker can be noticed. */
const MAIN_SPIN_MS = 20;
/** Check interval of an asynchronous wait where `Atomics.waitAsync` is missing (ms). */
const POLL_MS = 1;

type WaitAsync = (array: Int32Array, index: number, value: number, timeout: number) => { async: boolean; value: Promise<unknown> | string };
const waitAsync = (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync;

/**
 * Worker threads that run kernels on shared WebAssembly memories beside the main thread. A job is
 * one kernel call split into chunks: the main thread writes the arguments into a shared control
 * block, wakes the workers, and every thread, the main one included, claims chunks until none is
 * left, so a worker slow to wake (a busy machine) costs at most the chunk it holds. The main thread
 * then waits for chunks still running (spinning first; then asynchronously, so a dead worker is
 * noticed). Workers never hold a Node process open while idle.
 *
 * A worker that dies fails the job in flight with `BackendError('worker-died')` once the others have
 * stopped, so no thread writes into memory after the caller has given it back; the pool is then
 * {@link dead} and a new one must be started.
 */
export class KernelPool {
  private readonly control: Int32Array;
  private death: string | undefined;
  private closed = false;
  private busy = false;

  private constructor(
    private readonly workers: readonly PoolWorker[],
    control: SharedArrayBuffer,
    private readonly local: LocalKernel,
  ) {
    this.control = new Int32Array(control);
    workers.forEach((w, i) =>
      w.onDeath((reason) => {
        if (!this.closed) this.death ??= `pool worker ${i + 1} of ${workers.length} died: ${reason}`;
      }),
    );
  }

  /**
   * Starts `threads − 1` workers, each instantiating `module` over every memory, and resolves once all
   * are ready. `local` runs the main thread's part.
   */
  static async start(support: ThreadSupport, threads: number, module: WasmModule, memories: readonly WasmMemory[], local: LocalKernel): Promise<KernelPool> {
    const control = new SharedArrayBuffer(4 * (Control.scratch + threads));
    const workers: PoolWorker[] = [];
    try {
      for (let i = 1; i < threads; i++) workers.push(support.spawn());
      await Promise.all(
        workers.map(
          (w, i) =>
            new Promise<void>((resolve, reject) => {
              w.onMessage((m) => {
                const reply = m as { ready?: boolean; error?: string };
                if (reply.ready) resolve();
                else reject(new BackendError('worker-start', `a pool worker could not instantiate the kernels: ${reply.error ?? 'no reason given'}`));
              });
              w.onDeath((reason) => reject(new BackendError('worker-start', `a pool worker died while starting: ${reason}`)));
              w.post({ module, memories, control, index: i + 1, spinMs: WORKER_SPIN_MS });
            }),
        ),
      );
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    for (const w of workers) w.keepAlive(false);
    return new KernelPool(workers, control, local);
  }

  /** Threads that compute a job, the main thread included. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /** Why the pool can run no more jobs (a worker died), or undefined. */
  get dead(): string | undefined {
    return this.death;
  }

  /**
   * Runs a job (see {@link PoolJob}). Returns undefined when every chunk finished while this thread
   * worked and spun, else a promise of the rest.
   * @throws BackendError `'worker-died'`, `'worker-failed'` (a kernel threw in a worker), `'pool-closed'`.
   */
  run(job: PoolJob): Promise<void> | undefined {
    if (this.closed) throw new BackendError('pool-closed', 'the reference backend was disposed: its worker pool is closed');
    if (this.death) throw new BackendError('worker-died', this.death);
    if (this.busy) throw new BackendError('pool-busy', 'a kernel job is already running on this pool');
    const { kernel, arena, args, size, chunks, scratch } = job;
    if (args.length > MAX_POOL_ARGS || scratch.length !== this.threads || !(chunks >= 1 && chunks <= MAX_CHUNKS)) {
      throw new BackendError('pool-job', `a pool job takes at most ${MAX_POOL_ARGS} arguments, 1–${MAX_CHUNKS} chunks and a scratch address per thread`);
    }
    const c = this.control;
    c[Control.command] = Command.run;
    c[Control.kernel] = POOL_KERNELS.indexOf(kernel);
    c[Control.arena] = arena;
    c[Control.argCount] = args.length;
    c[Control.size] = size;
    for (let i = 0; i < args.length; i++) c[Control.args + i] = args[i]!;
    for (let i = 0; i < scratch.length; i++) c[Control.scratch + i] = scratch[i]!;
    const sequence = (c[Control.sequence]! + 1) | 0;
    Atomics.store(c, Control.finished, 0);
    Atomics.store(c, Control.failed, 0);
    Atomics.store(c, Control.claim, (((sequence & 0xffff) << 16) | (chunks << 8)) | 0);
    Atomics.store(c, Control.sequence, sequence);
    Atomics.notify(c, Control.sequence);
    this.busy = true;
    let localError: unknown;
    try {
      claimChunks(c, sequence, (lo, hi) => this.local(kernel, arena, args, { lo, hi, scratch: scratch[0]! }));
    } catch (e) {
      localError = e;
      // Close the job: no chunk is claimed after this, and those never claimed count as finished.
      for (;;) {
        const word = Atomics.load(c, Control.claim);
        const next = word & 255;
        if (Atomics.compareExchange(c, Control.claim, word, (word - next + chunks) | 0) !== word) continue;
        Atomics.add(c, Control.finished, chunks - next);
        break;
      }
    }
    if (this.spinForWorkers(chunks)) return this.finish(localError);
    return this.waitForWorkers(chunks, localError);
  }

  /** Asks the workers to stop and ends them. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const c = this.control;
    c[Control.command] = Command.exit;
    Atomics.add(c, Control.sequence, 1);
    Atomics.notify(c, Control.sequence);
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  /** Spins until `chunks` chunks have finished (true), or for at most MAIN_SPIN_MS (false). */
  private spinForWorkers(chunks: number): boolean {
    const c = this.control;
    if (Atomics.load(c, Control.finished) >= chunks) return true;
    const until = performance.now() + MAIN_SPIN_MS;
    for (let i = 1; ; i++) {
      if (Atomics.load(c, Control.finished) >= chunks) return true;
      if ((i & 1023) === 0 && performance.now() > until) return false;
    }
  }

  private async waitForWorkers(chunks: number, localError: unknown): Promise<void> {
    const need = chunks;
    const c = this.control;
    for (const w of this.workers) w.keepAlive(true);
    try {
      for (;;) {
        const done = Atomics.load(c, Control.finished);
        if (done >= need) break;
        if (this.death) {
          // The others may still be writing: end them all before the caller frees anything.
          this.busy = false;
          await this.close();
          throw new BackendError('worker-died', this.death);
        }
        const wait = waitAsync?.(c, Control.finished, done, 50);
        if (wait && wait.async) await wait.value;
        else if (!wait) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    } finally {
      if (!this.closed) for (const w of this.workers) w.keepAlive(false);
    }
    this.finish(localError);
  }

  private finish(localError: unknown): undefined {
    this.busy = false;
    if (localError !== undefined) throw localError;
    const failed = this.control[Control.failed]!;
    if (failed !== 0) throw new BackendError('worker-failed', `a kernel threw in pool worker ${failed - 1}`);
    return undefined;
  }
}
