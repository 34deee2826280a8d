import { BackendError } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { kernelBuild } from '../kernels/wasm/kernel-build.js';
import { MAX_PAGES, type WasmInstance, webAssembly } from '../kernels/wasm/webassembly-api.js';
import { KernelPool, type LocalKernel } from './kernel-pool.js';
import { Control } from './pool-worker-source.js';
import { type PoolWorker, type ThreadSupport, threadSupport } from './thread-support.js';

// The pool's failure paths, deterministically: a worker that holds a chunk and dies fails the job
// only after every worker has been ended; a kernel that throws in a worker is a typed error and
// the pool stays usable; a closed pool refuses jobs. And its split: every chunk is computed once,
// whoever claims it.

/** Workers that say they are ready and never compute; `die()` ends them as a crash would. */
function silentWorkers(): { support: ThreadSupport; die(): void; terminated: () => number } {
  const deaths: ((reason: string) => void)[] = [];
  let terminated = 0;
  const spawn = (): PoolWorker => ({
    post: () => undefined,
    onMessage: (f) => queueMicrotask(() => f({ ready: true })),
    onDeath: (f) => void deaths.push(f),
    keepAlive: () => undefined,
    terminate: async () => void terminated++,
  });
  return { support: { cores: 2, unavailable: undefined, spawn }, die: () => deaths.forEach((f) => f('it was killed')), terminated: () => terminated };
}

/** Claims chunk `next` of the job in `control` for a thread that will never finish it (as a worker that then dies). */
function stealChunk(control: Int32Array): void {
  const word = Atomics.load(control, Control.claim);
  Atomics.compareExchange(control, Control.claim, word, (word + 1) | 0);
}

describe('KernelPool', () => {
  it('a worker that dies holding a chunk fails the job with worker-died once every worker is ended, and the pool stays dead', async () => {
    const fake = silentWorkers();
    let ran = 0;
    let control: Int32Array | undefined;
    const local: LocalKernel = () => {
      // The first chunk here: "the worker" takes the next one and never finishes it.
      if (ran++ === 0) stealChunk(control!);
    };
    const pool = await KernelPool.start(fake.support, 2, {}, [], local);
    control = (pool as unknown as { control: Int32Array }).control;
    setTimeout(() => fake.die(), 5); // fires while the main thread waits for the held chunk
    const job = pool.run({ kernel: 'linear', arena: 0, args: [1, 2, 3], size: 8, chunks: 4, scratch: [0, 0] });
    expect(job).toBeInstanceOf(Promise); // its own chunks done, the stolen one never
    await expect(job).rejects.toMatchObject({ code: 'worker-died', message: expect.stringMatching(/pool worker 1 of 1 died: it was killed/) });
    expect(ran).toBe(3); // the main thread ran every chunk but the stolen one
    expect(fake.terminated()).toBe(1);
    expect(pool.dead).toMatch(/died/);
    expect(() => pool.run({ kernel: 'linear', arena: 0, args: [], size: 1, chunks: 1, scratch: [0, 0] })).toThrow(BackendError);
  });

  it('splits a job into chunks computed once each, the main thread taking what the workers do not', async () => {
    const fake = silentWorkers();
    const seen: [number, number][] = [];
    const pool = await KernelPool.start(fake.support, 2, {}, [], (_k, _a, _args, part) => void seen.push([part.lo, part.hi]));
    expect(pool.run({ kernel: 'attention', arena: 0, args: [], size: 10, chunks: 4, scratch: [0, 0] })).toBeUndefined();
    expect(seen).toEqual([[0, 2], [2, 5], [5, 7], [7, 10]]);
    await pool.close();
  });

  it('a kernel that throws in a worker is BackendError worker-failed, and the next job runs', async () => {
    const build = await kernelBuild(true);
    const memory = new webAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    const main: WasmInstance = await webAssembly.instantiate(build.module, { env: { memory } });
    const linear = main.exports.linear as (...args: number[]) => void;
    let slow = false;
    const local: LocalKernel = (_kernel, _arena, args, part) => {
      // Hold the main thread in its first chunk, so the worker claims the other (the bad) one.
      if (slow) {
        slow = false;
        const until = performance.now() + 200;
        while (performance.now() < until);
        return;
      }
      linear(...args, part.lo, part.hi, part.scratch);
    };
    const pool = await KernelPool.start({ ...threadSupport(), cores: 2 }, 2, build.module, [memory], local);
    try {
      // A linear over addresses past the memory: a trap in whichever thread runs it.
      const outside = 3 * 65536;
      slow = true;
      let caught: unknown;
      try {
        await pool.run({ kernel: 'linear', arena: 0, args: [0, outside, 1, 8, outside, 16, outside, 0, 0], size: 2, chunks: 2, scratch: [0, 0] });
      } catch (e) {
        caught = e;
      }
      expect(caught).toMatchObject({ code: 'worker-failed' });
      // A good job (y = x·w over two 8 × 8 panels, in the first page past the reserved one) after it.
      const f = new Float32Array(memory.buffer);
      const [x, w, y] = [65536, 65536 + 256, 65536 + 1024];
      f.fill(1, x / 4, x / 4 + 8);
      f.fill(0.5, w / 4, w / 4 + 128);
      await pool.run({ kernel: 'linear', arena: 0, args: [0, x, 1, 8, w, 16, y, 0, 0], size: 2, chunks: 2, scratch: [0, 0] });
      expect(Array.from(f.subarray(y / 4, y / 4 + 16))).toEqual(Array(16).fill(4));
    } finally {
      await pool.close();
    }
    expect(() => pool.run({ kernel: 'linear', arena: 0, args: [], size: 1, chunks: 1, scratch: [0, 0] })).toThrow(
      expect.objectContaining({ code: 'pool-closed' }) as unknown as BackendError,
    );
  });
});
