// The code each pool worker runs, as source text: the pool starts workers from a string (Node's
// `eval` workers, a Blob URL in browsers), so the package needs no separate worker file that every
// bundler would have to find. It is plain ES2020 with no imports; `listen` and `post` come from a
// per-platform prelude (see thread-support.ts).

/** Offsets in the pool's control block (an `Int32Array` over a `SharedArrayBuffer`). */
export const Control = {
  /** Bumped by the main thread for each job; workers sleep until it changes. */
  sequence: 0,
  /** Chunks of the current job computed so far. */
  finished: 1,
  /** 0, or 1 + the index of a worker whose kernel threw on the current job. */
  failed: 2,
  /** What the job is: {@link Command}. */
  command: 3,
  /** Index of the kernel in {@link POOL_KERNELS}. */
  kernel: 4,
  /** Index of the memory (arena) whose instance runs it. */
  arena: 5,
  /** Number of arguments at {@link Control.args}. */
  argCount: 6,
  /** The range [0, size) the job's chunks split (panels, heads). */
  size: 7,
  /**
   * The claim word: job sequence (low 16 bits) << 16 | chunks << 8 | next chunk. A thread claims
   * chunk i by a compare-exchange from i to i + 1 within the same job, so every chunk is computed
   * once, by whichever thread is free first, and a thread still in an old job claims nothing.
   */
  claim: 8,
  /** The kernel's leading arguments (every chunk the same). */
  args: 16,
  /** Per thread i, at `scratch + i`: its scratch address, the kernel's last argument. */
  scratch: 48,
} as const;

/** Longest argument list a pooled kernel takes before its range and scratch. */
export const MAX_POOL_ARGS = Control.scratch - Control.args;

/** Most chunks a job is split into (the claim word's 8 bits). */
export const MAX_CHUNKS = 255;

/** {@link Control.command} values. */
export const Command = { run: 1, exit: 2 } as const;

/** Kernels the pool runs, by index; each takes (…args, lo, hi, scratch) and computes its part [lo, hi). */
export const POOL_KERNELS = ['linear', 'attention'] as const;
export type PoolKernel = (typeof POOL_KERNELS)[number];

/**
 * Claims and runs chunks of the current job until none is left (the main thread's side; the worker
 * body below does the same in its source text). `run(lo, hi)` computes a chunk. Returns how many
 * chunks this thread ran.
 */
export function claimChunks(c: Int32Array, sequence: number, run: (lo: number, hi: number) => void): number {
  let ran = 0;
  for (;;) {
    const word = Atomics.load(c, Control.claim);
    const chunks = (word >>> 8) & 255;
    const next = word & 255;
    if (word >>> 16 !== (sequence & 0xffff) || next >= chunks) return ran;
    if (Atomics.compareExchange(c, Control.claim, word, (word + 1) | 0) !== word) continue;
    const size = c[Control.size]!;
    try {
      run(Math.floor((next * size) / chunks), Math.floor(((next + 1) * size) / chunks));
    } finally {
      Atomics.add(c, Control.finished, 1);
      ran++;
    }
  }
}

/**
 * The worker body. The first message carries the compiled module, the memories (one instance per
 * memory), the control block, the worker's index and how long to spin before sleeping; the worker
 * answers `{ ready: true }` (or `{ error }`) and then claims chunks of each job until told to exit.
 * After a job it spins a short while on the sequence, so the next job of the same forward starts
 * without a wake-up, and then sleeps in `Atomics.wait`.
 */
export const POOL_WORKER_BODY = `
// As claimChunks above.
function claimChunks(c, sequence, run) {
  for (;;) {
    var word = Atomics.load(c, ${Control.claim});
    var chunks = (word >>> 8) & 255;
    var next = word & 255;
    if (word >>> 16 !== (sequence & 0xffff) || next >= chunks) return;
    if (Atomics.compareExchange(c, ${Control.claim}, word, (word + 1) | 0) !== word) continue;
    var size = c[${Control.size}];
    try {
      run(Math.floor((next * size) / chunks), Math.floor(((next + 1) * size) / chunks));
    } finally {
      Atomics.add(c, ${Control.finished}, 1);
    }
  }
}
listen(function start(message) {
  var instances;
  try {
    instances = message.memories.map(function (memory) { return new WebAssembly.Instance(message.module, { env: { memory: memory } }); });
  } catch (e) {
    post({ error: String(e) });
    return;
  }
  var names = ${JSON.stringify(POOL_KERNELS)};
  var kernels = instances.map(function (instance) { return names.map(function (name) { return instance.exports[name]; }); });
  var c = new Int32Array(message.control);
  var spinMs = message.spinMs;
  var seen = Atomics.load(c, ${Control.sequence});
  post({ ready: true });
  for (;;) {
    var seq = Atomics.load(c, ${Control.sequence});
    if (seq === seen) {
      var until = performance.now() + spinMs;
      for (var i = 1; seq === seen; i++) {
        if ((i & 1023) === 0 && performance.now() > until) Atomics.wait(c, ${Control.sequence}, seen);
        seq = Atomics.load(c, ${Control.sequence});
      }
    }
    seen = seq;
    if (c[${Control.command}] === ${Command.exit}) return;
    var f = kernels[c[${Control.arena}]][c[${Control.kernel}]];
    var args = [];
    for (var a = 0; a < c[${Control.argCount}]; a++) args.push(c[${Control.args} + a]);
    var scratch = c[${Control.scratch} + message.index];
    var n = args.length;
    try {
      claimChunks(c, seen, function (lo, hi) {
        args[n] = lo;
        args[n + 1] = hi;
        args[n + 2] = scratch;
        f.apply(null, args);
      });
    } catch (e) {
      Atomics.compareExchange(c, ${Control.failed}, 0, message.index + 1);
    }
    Atomics.notify(c, ${Control.finished});
  }
});
`;
