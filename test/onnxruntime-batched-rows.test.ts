/**
 * All rows of a forward in one session run: the onnxruntime backend packs every row of a request
 * (decode rows of several sequences, a shadow chunk, prefill pieces) into one run of its exported
 * graph, each row over its own cache, length and regime. Checked against the same backend running
 * one row per run (`rowsPerRun: 1`, what `forwardRowByRow` did) at 1e-5, logits and caches alike.
 */
import { OnnxRuntimeBackend, planRuns } from '@ropeswitch/backend-onnxruntime';
import { type CpuKvCache, type ForwardRow, type ModelConfig, type RopeSchedule, type WeightStore, createRopeSchedule, loadCheckpoint } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { hfDir, maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

const tempDir = scratchDirs('ropeswitch-ort-rows-');

describe('planRuns', () => {
  const rows = (...lengths: number[]) => lengths.map((n) => ({ tokens: new Int32Array(n) }));

  it('puts rows that fit the slots and the chunk into one run, in request order', () => {
    expect(planRuns(rows(1, 3, 2), { slots: 4, chunk: 8 })).toEqual([
      [
        { row: 0, start: 0, end: 1 },
        { row: 1, start: 0, end: 3 },
        { row: 2, start: 0, end: 2 },
      ],
    ]);
  });

  it('cuts long rows into pieces over consecutive runs and spills rows past the slots', () => {
    expect(planRuns(rows(1, 10, 1), { slots: 2, chunk: 4 })).toEqual([
      [
        { row: 0, start: 0, end: 1 },
        { row: 1, start: 0, end: 4 },
      ],
      [
        { row: 1, start: 4, end: 8 },
        { row: 2, start: 0, end: 1 },
      ],
      [{ row: 1, start: 8, end: 10 }],
    ]);
  });
});

describe('onnxruntime backend: every row of a forward in one session run', () => {
  let config: ModelConfig;
  let weights: WeightStore;
  let schedule: RopeSchedule;
  let batched: OnnxRuntimeBackend;
  let single: OnnxRuntimeBackend;
  beforeAll(async () => {
    ({ config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`));
    schedule = createRopeSchedule(config.rope);
    const cacheDir = tempDir();
    batched = await OnnxRuntimeBackend.open(config, weights, { cacheDir, prefillChunk: 8, rowsPerRun: 4 });
    single = await OnnxRuntimeBackend.open(config, weights, { cacheDir, prefillChunk: 8, rowsPerRun: 1 });
  });
  afterAll(async () => {
    await batched?.dispose();
    await single?.dispose();
    await weights?.close();
  });

  /** Session runs of `backend` during `f`. */
  async function countRuns(backend: OnnxRuntimeBackend, f: () => Promise<unknown>): Promise<number> {
    const spy = vi.spyOn(backend['session']!, 'run');
    try {
      await f();
      return spy.mock.calls.length;
    } finally {
      spy.mockRestore();
    }
  }

  it('mixes decode rows, a shadow chunk and prefill pieces (other regimes, other lengths) within 1e-5 of one row per run, in one run when they fit', async () => {
    const ids = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 37 + seed) % config.vocabSize);
    const sequences = 6;
    const caches = [batched, single].map((b) => Array.from({ length: sequences }, () => b.createCache() as CpuKvCache));
    const long = schedule.regimeFor(5000);
    /** One request per step: [tokens per sequence (0 = not in it), regime length, logits]. */
    const steps: [number, number, number | undefined][][] = [
      // Prefill rows: one longer than the chunk (pieces over three runs), one in the long regime without logits.
      [[20, 30, 3], [5, 5000, 0], [9, 9, 2]],
      // A decode row, a 3-token shadow chunk (long regime, no logits) and a 2-token row: one run.
      [[1, 31, 1], [3, 5000, 0], [2, 12, 2]],
      // Six rows, more than the four slots: two runs.
      [[1, 32, 1], [3, 5000, 0], [1, 13, 1], [4, 4, 4], [1, 5000, 1], [2, 2, undefined]],
      [[1, 33, 1], [3, 5000, 0], [1, 14, 1], [1, 5, 1]],
    ];
    const runs: number[] = [];
    for (const step of steps) {
      const request = (k: number) => {
        const rows: ForwardRow[] = [];
        step.forEach(([n, regimeLength, logits], seq) => {
          const cache = caches[k]![seq]!;
          const tokens = ids(n, seq * 5 + cache.length);
          rows.push({
            tokens,
            positions: tokens.map((_, i) => cache.length + i),
            cache,
            regime: regimeLength > 4096 ? long : schedule.regimeFor(regimeLength),
            ...(logits === undefined ? {} : { logits }),
          });
        });
        return { rows };
      };
      let a!: Awaited<ReturnType<OnnxRuntimeBackend['forward']>>;
      runs.push(await countRuns(batched, async () => (a = await batched.forward(request(0)))));
      const b = await single.forward(request(1));
      expect(a.rows.map((r) => r.count)).toEqual(b.rows.map((r) => r.count));
      a.rows.forEach((r, i) => expect(maxAbsDiff(r.data, b.rows[i]!.data), `row ${i}`).toBeLessThanOrEqual(1e-5));
    }
    expect(runs).toEqual([3, 1, 2, 1]);
    for (let seq = 0; seq < sequences; seq++) {
      expect(caches[0]![seq]!.length).toBe(caches[1]![seq]!.length);
      expect(caches[0]![seq]!.regimeSpans()).toEqual(caches[1]![seq]!.regimeSpans());
      for (let l = 0; l < config.numLayers; l++) expect(maxAbsDiff(readCpuLayerKeys(caches[0]![seq]!, l), readCpuLayerKeys(caches[1]![seq]!, l))).toBeLessThanOrEqual(1e-5);
    }
    caches.flat().forEach((c) => c.dispose());
  });

  it('a run that fails leaves every cache of the request as it was', async () => {
    const caches = [batched.createCache(), batched.createCache()];
    const regime = schedule.regimeFor(8);
    await batched.forward({ rows: caches.map((cache) => ({ tokens: [1, 2, 3], positions: [0, 1, 2], cache, regime })) });
    const before = caches.map((c) => readCpuLayerKeys(c, 0));
    const spy = vi.spyOn(batched['session']!, 'run').mockRejectedValueOnce(new Error('boom'));
    const rows = caches.map((cache) => ({ tokens: [4], positions: [3], cache, regime }));
    await expect(batched.forward({ rows })).rejects.toMatchObject({ name: 'BackendError', code: 'run' });
    spy.mockRestore();
    expect(caches.map((c) => c.length)).toEqual([3, 3]);
    caches.forEach((c, i) => expect(readCpuLayerKeys(c, 0)).toEqual(before[i]));
    caches.forEach((c) => c.dispose());
  });
});
