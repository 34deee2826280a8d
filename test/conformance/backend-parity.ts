/**
 * Backend parity: a backend's logits against HF transformers' recorded ones (`test/fixtures/hf/`)
 * and against the reference backend's, on every fixture case, through the paths a policy uses:
 * a no-cache forward (short and long regime), a cached greedy loop, a chunked prefill, a batch whose
 * rows use different regimes, and (when the backend has it) key rerotation. Backend-neutral: each
 * backend registers it with its own `open`, next to {@link describePolicyConformance}.
 */
import {
  type Backend,
  type KvCache,
  LongRopeSchedule,
  type RopeRegime,
  type RopeSchedule,
  Session,
  createRopeSchedule,
  greedyDecode,
  noCacheForward,
  loadCheckpoint,
} from '@ropeswitch/core';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hfCases, hfDir, inputIds, maxAbsDiff, readExpected } from '../support/fixtures.js';
import { type LayerKeyReader, freshPrefill, readCpuLayerKeys } from './policy-runs.js';

export interface BackendParityOptions {
  /** Max |Δ logit| against HF and the reference backend (default 1e-4). */
  readonly logitTolerance?: number;
  /** Max |Δ| between keys rerotated in place and a fresh prefill's, layer 0 (default 1e-5). */
  readonly keyTolerance?: number;
  /** Fixture cases to run (default: every folder of `test/fixtures/hf/`). */
  readonly cases?: readonly string[];
  /** Reads a cache's keys (default: CPU caches only). GPU backends pass their readback. */
  readonly readLayerKeys?: LayerKeyReader;
  /** Prompts at least this long get no chunked-prefill and batch checks (default 1024). */
  readonly largePrompt?: number;
}

/** Registers the parity suite for one backend. `open` loads a fixture folder (HF layout) into it. */
export function describeBackendParity(
  label: string,
  open: (checkpointDir: string) => Promise<Backend>,
  options: BackendParityOptions = {},
): void {
  const tol = options.logitTolerance ?? 1e-4;
  const keyTol = options.keyTolerance ?? 1e-5;
  const readLayerKeys = options.readLayerKeys ?? readCpuLayerKeys;
  const largePrompt = options.largePrompt ?? 1024;

  describe(`backend parity (${label})`, () => {
    for (const name of options.cases ?? hfCases()) {
      describe(name, () => {
        const e = readExpected(name);
        // The chunked and batch checks are registered only for small prompts (a 4090-token prompt
        // three times over costs minutes on a CPU backend and adds no path the small cases lack).
        const itSmall = e.prompt.length < largePrompt ? it : () => undefined;
        let backend: Backend;
        let reference: ReferenceBackend;
        beforeAll(async () => {
          backend = await open(`${hfDir}${name}`);
          const checkpoint = await loadCheckpoint(`${hfDir}${name}`);
          reference = new ReferenceBackend(checkpoint.config, checkpoint.weights);
          await checkpoint.weights.close();
        });
        afterAll(async () => {
          await backend?.dispose();
          await reference?.dispose();
        });

        it('a no-cache forward matches HF and the reference backend, short and long regime', async () => {
          const shortIds = inputIds(e, e.full_forward_short);
          const short = await noCacheForward(backend, shortIds);
          expect(maxAbsDiff(short, e.full_forward_short.logits), 'vs HF, short').toBeLessThanOrEqual(tol);
          expect(maxAbsDiff(short, await noCacheForward(reference, shortIds)), 'vs reference, short').toBeLessThanOrEqual(tol);
          const longIds = inputIds(e, e.full_forward_long);
          const last = e.full_forward_long.positions.length;
          const long = await noCacheForward(backend, longIds, { last });
          expect(maxAbsDiff(long, e.full_forward_long.logits.flat()), 'vs HF, long').toBeLessThanOrEqual(tol);
          expect(maxAbsDiff(long, await noCacheForward(reference, longIds, { last })), 'vs reference, long').toBeLessThanOrEqual(tol);
        });

        it('a cached greedy loop reproduces HF (stale keys kept, as HF custom loops do)', async () => {
          const stale = e.greedy_stale ?? e.greedy_hf;
          const session = new Session(backend);
          try {
            const result = await greedyDecode(session, e.prompt, { maxNewTokens: e.greedy_hf.max_new_tokens });
            expect(result.tokens).toEqual(stale.tokens);
            result.logits.forEach((l, i) => expect(maxAbsDiff(l, stale.logits[i]!), `step ${i}`).toBeLessThanOrEqual(tol));
          } finally {
            await session.dispose();
          }
        });

        itSmall('a chunked prefill equals the reference backend, and so does the next step', async () => {
          const chunks = [1, 3, Math.max(1, e.prompt.length - 4)];
          for (const chunkSize of chunks) {
            const mine = new Session(backend);
            const theirs = new Session(reference);
            try {
              const a = await mine.prefill(e.prompt, { chunkSize });
              const b = await theirs.prefill(e.prompt, { chunkSize });
              expect(maxAbsDiff(a, b), `chunk ${chunkSize}`).toBeLessThanOrEqual(tol);
              const next = e.greedy_hf.tokens[0]!;
              expect(maxAbsDiff(await mine.forward([next]), await theirs.forward([next])), `chunk ${chunkSize}, next`).toBeLessThanOrEqual(tol);
            } finally {
              await mine.dispose();
              await theirs.dispose();
            }
          }
        });

        itSmall('rows of one batch keep their own cache and regime', async () => {
          const schedule = createRopeSchedule(backend.config.rope);
          const short = schedule.regimeFor(1);
          const long = otherRegime(schedule);
          const prompt = e.prompt;
          const half = prompt.slice(0, Math.ceil(prompt.length / 2));
          const rows = (caches: KvCache[]) => [
            { tokens: prompt, positions: prompt.map((_, i) => i), cache: caches[0]!, regime: short, logits: 2 },
            { tokens: half, positions: half.map((_, i) => i), cache: caches[1]!, regime: long },
            { tokens: prompt, positions: prompt.map((_, i) => i + 7), cache: caches[2]!, regime: long, logits: 0 },
          ];
          const mineCaches = [backend.createCache(), backend.createCache(), backend.createCache()];
          const refCaches = [reference.createCache(), reference.createCache(), reference.createCache()];
          try {
            const mine = await backend.forward({ rows: rows(mineCaches) });
            const theirs = await reference.forward({ rows: rows(refCaches) });
            expect(mine.rows.map((r) => r.count)).toEqual([2, 1, 0]);
            mine.rows.forEach((r, i) => expect(maxAbsDiff(r.data, theirs.rows[i]!.data), `row ${i}`).toBeLessThanOrEqual(tol));
            expect(mineCaches.map((c) => c.length)).toEqual([prompt.length, half.length, prompt.length]);
            expect(Array.from(mineCaches[2]!.positions())).toEqual(prompt.map((_, i) => i + 7));
            for (let layer = 0; layer < backend.config.numLayers; layer++) {
              const keys = await readLayerKeys(mineCaches[1]!, layer);
              expect(maxAbsDiff(keys, readCpuLayerKeys(refCaches[1]!, layer)), `layer ${layer} keys`).toBeLessThanOrEqual(tol);
            }
          } finally {
            [...mineCaches, ...refCaches].forEach((c) => c.dispose());
          }
        });

        it('rerotateKeys turns layer-0 keys into a fresh prefill’s', async () => {
          if (!backend.capabilities.rerotateKeys || !backend.rerotateKeys) {
            expect(backend.rerotateKeys, 'capabilities.rerotateKeys is false, so no rerotateKeys').toBeUndefined();
            return;
          }
          const schedule = createRopeSchedule(backend.config.rope);
          const from = schedule.regimeFor(1);
          const to = otherRegime(schedule);
          const cache = await freshPrefill(backend, e.prompt, from);
          const fresh = await freshPrefill(backend, e.prompt, to);
          try {
            await backend.rerotateKeys(cache, to);
            expect(cache.uniformRegime()).toBe(to);
            const rotated = await readLayerKeys(cache, 0);
            expect(maxAbsDiff(rotated, await readLayerKeys(fresh, 0))).toBeLessThanOrEqual(keyTol);
          } finally {
            cache.dispose();
            fresh.dispose();
          }
        });
      });
    }
  });
}


/** The regime a crossing switches to: LongRoPE's long factors, else the regime 64 past the threshold (short-only models: the same one). */
function otherRegime(schedule: RopeSchedule): RopeRegime {
  if (schedule instanceof LongRopeSchedule) return schedule.long;
  return schedule.regimeFor((schedule.threshold ?? 1) + 64);
}
