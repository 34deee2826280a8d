import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// Every `examples/*.ts` runs with tsx and prints what it is there to show. The examples import
// the workspace packages as a user would (through their built `dist`), so they need a build.
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const examplesDir = join(repoRoot, 'examples');
const tsx = join(repoRoot, 'node_modules', '.bin', 'tsx');
const execFileAsync = promisify(execFile);

interface Expectation {
  /** Substrings stdout must contain. */
  readonly contains: readonly string[];
  /** Further checks on stdout. */
  readonly check?: (stdout: string) => void;
}

const DIVERGES = 'stale cache diverges';

const EXPECTATIONS: Readonly<Record<string, Expectation>> = {
  'reference-threads-and-weights.ts': {
    contains: ['float32: copied 50/50, tokens as float32', 'bfloat16: copied 50/50', 'int8: copied'],
    check: (stdout) => {
      for (const weights of ['float32', 'bfloat16', 'float16', 'int8']) expect(stdout).toMatch(new RegExp(`${weights}: copied \\d+/50.*${weights} weights`));
      expect(stdout).toMatch(/WebAssembly (relaxed )?SIMD/);
    },
  },
  'backends-side-by-side.ts': {
    contains: ['reference: copied 51/51, events shadow-start@52 shadow-swap@65', 'onnxruntime: copied 51/51', 'webgpu ('],
    check: (stdout) => {
      const lines = stdout.split('\n').filter((line) => line.includes(': copied '));
      expect(lines).toHaveLength(3);
      for (const line of lines) {
        expect(line).toContain('copied 51/51, events shadow-start@52 shadow-swap@65, tokens equal');
        expect(Number(/max \|Δ logit\| (\S+)/.exec(line)![1])).toBeLessThan(1e-3);
      }
    },
  },
  'onnxruntime-genai.ts': {
    contains: ['genai-layout model: model.onnx, model.onnx.data, genai_config.json', 're-prefill: copied 51/51, events re-prefill'],
    check: (stdout) => {
      // The stale cache breaks past the crossing on this model (generated token 13 onwards).
      const stale = Number(/stale: copied (\d+)\/51/.exec(stdout)![1]);
      expect(stale).toBeLessThan(40);
    },
  },
  'onnxruntime-quantized.ts': {
    contains: [
      'int8: exported 17 matrices as MatMulNBits (0 kept float32)',
      'int4: reopened the cached export (exported again: false); phases verify, load',
      'int8: copied 51/51, events shadow-start@52 shadow-swap@65',
    ],
    check: (stdout) => {
      expect(stdout).toContain('phases export, load');
      // int4 costs a little copy accuracy on this model (0.98 over 50 sequences), not the crossing.
      expect(Number(/int4: copied (\d+)\/51/.exec(stdout)![1])).toBeGreaterThanOrEqual(48);
    },
  },
  'onnxruntime-float16-cache.ts': {
    contains: [
      'shadowPrefill, float32 cache (CpuKvCache',
      'shadowPrefill, float16 cache (Float16KvCache',
      'rerotate, float16 cache (Float16KvCache',
    ],
    check: (stdout) => {
      const bytes = (policy: string, dtype: string) => Number(new RegExp(`${policy}, ${dtype} cache \\(\\w+, (\\d+) bytes`).exec(stdout)![1]);
      expect(bytes('shadowPrefill', 'float16')).toBe(bytes('shadowPrefill', 'float32') / 2);
      // The exact policy copies on both; float16 moves logits by about binary16's rounding, not the tokens.
      expect(stdout).toMatch(/shadowPrefill, float16 cache .*copied 51\/51, events shadow-start@52 shadow-swap@65/);
      for (const policy of ['shadowPrefill', 'rerotate']) {
        const [, diff, scale] = new RegExp(`${policy}: max \\|Δ logit\\| float16 vs float32 cache (\\S+) \\(logits up to ±(\\S+)\\)`).exec(stdout)!;
        // binary16 rounding of the cache moves the logits by well under 1 % of their range (measured 0.16–0.23 %).
        expect(Number(diff)).toBeGreaterThan(0);
        expect(Number(diff) / Number(scale)).toBeLessThan(0.01);
      }
    },
  },
  'compose-policies.ts': {
    contains: ['[shadow-start by shadow-prefill]', '[rerotate by rerotate]', '[shadow-swap by shadow-prefill]'],
    check: (stdout) => {
      const steps = stdout.split('\n').filter((line) => line.startsWith('step '));
      expect(steps).toHaveLength(40);
      const diff = (line: string) => Number(/vs oracle (\S+)/.exec(line)![1]);
      const rotated = steps.findIndex((line) => line.includes('rerotate by'));
      const swapped = steps.findIndex((line) => line.includes('shadow-swap by'));
      expect(rotated).toBeGreaterThan(0);
      expect(swapped).toBeGreaterThan(rotated);
      // Exact before the crossing and after the swap; approximate (rerotated) in between.
      for (const line of [...steps.slice(0, rotated), ...steps.slice(swapped)]) expect(diff(line)).toBeLessThan(1e-4);
      expect(diff(steps[rotated]!)).toBeGreaterThan(1e-2);
    },
  },
  'custom-policy.ts': {
    contains: ['events re-prefill@65', 'same tokens as rePrefill(): true; same logits, bit for bit: true'],
    check: (stdout) => {
      // The rebuilt cache keeps the copy going past the crossing (a stale one falls to chance there).
      expect(Number(/copied (\d+)\/56/.exec(stdout)![1])).toBeGreaterThanOrEqual(54);
    },
  },
  'custom-loop.ts': {
    contains: ['10/10 steps agree with the oracle', 'event rope-regime-change from warn-only at length 65', 'event re-prefill from re-prefill at length 65', 'cache regimes now: longrope:long'],
    check: (stdout) => {
      expect(stdout).not.toContain('<- differs');
      // warnOnly sees the request first, so its event comes first.
      expect(stdout.indexOf('event rope-regime-change')).toBeLessThan(stdout.indexOf('event re-prefill'));
    },
  },
  'real-shape.ts': {
    contains: ['loading 100%', 'loaded hidden 3072, 1 layer, vocab 32064', 'decoded 4 tokens'],
    check: (stdout) => {
      expect(Number(/wrote (\d+) shards/.exec(stdout)![1])).toBeGreaterThanOrEqual(2);
      expect(stdout.split('\n').filter((line) => line.startsWith('  loading '))).toHaveLength(10);
    },
  },
  'rope-schedule.ts': {
    contains: ['S = 4095: longrope:short', 'S = 4096: longrope:short', 'S = 4097: longrope:long', 'rerotation at p = 4000'],
  },
  'serve-http.ts': {
    contains: ['request B (n = 40, streaming, 41 events then [DONE]): HTTP 200', 'too long (n = 200): HTTP 400 position-out-of-range', 'port refuses connections: true'],
    check: (stdout) => {
      const requests = stdout.split('\n').filter((line) => line.startsWith('request '));
      expect(requests).toHaveLength(3);
      for (const line of requests) {
        expect(line).toContain('HTTP 200, finish_reason stop');
        expect(line).toContain('tokens equal to a solo run: true');
        const [, copied, n] = /copied (\d+)\/(\d+)/.exec(line)!;
        expect(Number(copied)).toBeGreaterThanOrEqual(Number(n) - 1);
      }
      // Continuous batching: the concurrent sequences shared backend steps.
      const [forwards, steps, most] = /scheduler, for A, B and C: (\d+) forwards in (\d+) backend steps, up to (\d+) forwards/.exec(stdout)!.slice(1).map(Number);
      expect(most).toBeGreaterThan(1);
      expect(steps).toBeLessThan(forwards! / 2);
      // The repeated prompt came from the prefix cache, with the same tokens.
      expect(stdout).toContain('repeat of C: HTTP 200, same tokens as before: true');
      expect(Number(/prefix cache reused (\d+) of its 52 prompt tokens/.exec(stdout)![1])).toBeGreaterThan(40);
    },
  },
  'stale-loop.ts': {
    contains: ['step 0: length 58 (longrope:short)', DIVERGES],
    check: (stdout) => {
      const steps = stdout.split('\n').filter((line) => line.startsWith('step '));
      expect(steps).toHaveLength(10);
      const first = steps.findIndex((line) => line.includes(DIVERGES));
      // Cached and oracle agree while every forward is short; the divergence starts past the threshold.
      expect(first).toBeGreaterThan(0);
      for (const line of steps.slice(0, first)) expect(line).toContain('(longrope:short)');
      expect(steps[first]).toContain('(longrope:long)');
    },
  },
};

const examples = readdirSync(examplesDir)
  .filter((name) => name.endsWith('.ts'))
  .sort();

describe('examples', () => {
  it('every example has an expectation here, and every expectation an example', () => {
    expect(examples.length).toBeGreaterThan(0);
    expect(Object.keys(EXPECTATIONS).sort()).toEqual(examples);
  });

  it.each(examples)('%s runs and prints what it shows', async (name) => {
    const expectation = EXPECTATIONS[name];
    expect(expectation, `no expectation for examples/${name}`).toBeDefined();
    const { stdout, stderr } = await execFileAsync(tsx, [join(examplesDir, name)], { cwd: repoRoot, timeout: 60_000 });
    expect(stderr).not.toMatch(/error|    at /i);
    for (const text of expectation!.contains) expect(stdout).toContain(text);
    expectation!.check?.(stdout);
  });
});
