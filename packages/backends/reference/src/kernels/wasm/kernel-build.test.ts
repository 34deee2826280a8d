import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { kernelBuild } from './kernel-build.js';

// The relaxed-SIMD builds (fused multiply-adds) run where the engine validates them: Node 20 with
// --experimental-wasm-relaxed-simd (later Nodes and Chrome 114+ by default). In a child Node that
// has them: the kernels say so, a matmul is within float32's error bound of a float64 sum, and a
// row's bits do not depend on batching or threads (the same fused kernel computes every output).

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

describe('kernel builds', () => {
  it('this runtime: the plain or relaxed build for unshared and shared memory, compiled once', async () => {
    const [a, b, c] = await Promise.all([kernelBuild(false), kernelBuild(true), kernelBuild(false)]);
    expect(a).toBe(c);
    expect([a.shared, b.shared]).toEqual([false, true]);
    expect(a.relaxed).toBe(b.relaxed);
  });

  it('relaxed SIMD where the engine has it: fused kernels within the error bound, batching and threads still bit-exact', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-relaxed-'));
    const script = join(dir, 'relaxed.mts');
    await writeFile(
      script,
      `import { WasmKernels } from ${JSON.stringify(here('./wasm-kernels.ts'))};
import { threadSupport } from ${JSON.stringify(here('../../threads/thread-support.ts'))};
const plan = [{ firstLayer: 0, endLayer: 1, weightBytes: 1 << 20 }];
const [inDim, outDim, rows] = [301, 419, 11];
const w = Float32Array.from({ length: outDim * inDim }, (_, i) => Math.sin(i * 0.37) * 0.1);
const x = Float32Array.from({ length: rows * inDim }, (_, i) => Math.cos(i * 0.11));
const out = {};
for (const threads of [1, 2]) {
  const k = new WasmKernels({ plan, threads, support: { ...threadSupport(), cores: 2 } });
  const lw = k.linear(w, outDim, inDim, undefined, 0, 'w');
  await k.ready();
  const run = async (from, n) => {
    const bx = k.groups[0].storage.allocate(n * inDim), by = k.groups[0].storage.allocate(n * outDim);
    bx.view.set(x.subarray(from * inDim, (from + n) * inDim));
    await k.matmul(bx.view, n, lw, by.view);
    return Array.from(by.view);
  };
  const batched = await run(0, rows);
  const alone = [];
  for (let t = 0; t < rows; t++) alone.push(...(await run(t, 1)));
  let err = 0;
  for (let t = 0; t < rows; t++) for (let o = 0; o < outDim; o++) {
    let s = 0, m = 0;
    for (let j = 0; j < inDim; j++) { const p = x[t * inDim + j] * w[o * inDim + j]; s += p; m += Math.abs(p); }
    err = Math.max(err, Math.abs(batched[t * outDim + o] - s) / ((inDim + 2) * 2 ** -24 * m + 2 ** -23 * Math.abs(s)));
  }
  out[threads] = { description: k.description, batched, sameAlone: batched.every((v, i) => Object.is(v, alone[i])), errOverBound: err, split: k.splitCalls };
  await k.dispose();
}
console.log(JSON.stringify({ ...out, sameThreads: out[1].batched.every((v, i) => Object.is(v, out[2].batched[i])) }, (key, v) => (key === 'batched' ? undefined : v)));
`,
    );
    try {
      const relaxedByDefault = (await kernelBuild(false)).relaxed;
      const node = relaxedByDefault ? [] : ['--experimental-wasm-relaxed-simd'];
      const { stdout } = await promisify(execFile)(process.execPath, [...node, '--import', 'tsx', script], { timeout: 60_000, cwd: here('../../../../../..') });
      const r = JSON.parse(stdout) as Record<string, { description: string; sameAlone: boolean; errOverBound: number; split: number }> & { sameThreads: boolean };
      for (const t of ['1', '2']) {
        expect(r[t]!.description).toMatch(/relaxed SIMD \(fused multiply-add\)/);
        expect(r[t]!.sameAlone, `${t} threads: batched = alone`).toBe(true);
        expect(r[t]!.errOverBound).toBeLessThanOrEqual(1);
      }
      expect(r['2']!.split).toBeGreaterThan(0);
      expect(r.sameThreads).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
