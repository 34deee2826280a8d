import { ReferenceBackend, type ReferenceBackendOptions } from '@ropeswitch/backend-reference';
import { type Backend, createRopeSchedule, loadCheckpoint, noCacheForward } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeBackendParity } from './conformance/backend-parity.js';
import { describePolicyConformance } from './conformance/policy-suite.js';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { hfCases, hfDir, inputIds, maxAbsDiff, readExpected } from './support/fixtures.js';

// The reference backend's plain TypeScript kernels (the readable fallback of the default
// WebAssembly SIMD ones): the backend-neutral suites on the small fixtures (the 4090-token one
// runs under the default kernels), and the two kernel sets against each other on every fixture.
// They agree to 1e-5 relative to the largest value compared (float32 sums against float64 ones:
// logits of magnitude ~9 differ by up to ~5e-5 after 600 tokens, as HF's float32 ones do).

/** 1e-5 of the largest |value| (at least 1e-5). */
const tolerance = (values: ArrayLike<number>): number => {
  let m = 1;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]!));
  return 1e-5 * m;
};

const open = (options: ReferenceBackendOptions) => async (dir: string): Promise<ReferenceBackend> => {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return new ReferenceBackend(config, weights, options);
  } finally {
    await weights.close();
  }
};
const small = ['seed1-gqa', 'seed4-llama-dynamic', 'seed8-phi3-short-only'];

describeBackendParity('reference backend, TypeScript kernels', open({ kernels: 'typescript' }), { cases: small });
describePolicyConformance('reference backend, TypeScript kernels', open({ kernels: 'typescript' }), { cases: small });

describe('reference backend: WebAssembly and TypeScript kernels agree', () => {
  for (const name of hfCases()) {
    describe(name, () => {
      const backends: Record<'wasm' | 'typescript', Backend> = {} as Record<'wasm' | 'typescript', Backend>;
      beforeAll(async () => {
        backends.wasm = await open({ kernels: 'wasm' })(`${hfDir}${name}`);
        backends.typescript = await open({ kernels: 'typescript' })(`${hfDir}${name}`);
      });
      afterAll(async () => {
        await backends.wasm?.dispose();
        await backends.typescript?.dispose();
      });

      it('logits of every position within 1e-5 relative (long regime, no cache)', async () => {
        const e = readExpected(name);
        const ids = inputIds(e, e.full_forward_long).slice(0, 600);
        const [a, b] = await Promise.all([noCacheForward(backends.wasm, ids, { last: ids.length }), noCacheForward(backends.typescript, ids, { last: ids.length })]);
        expect((backends.wasm as ReferenceBackend).kernels).toBe('wasm');
        expect(a.length).toBe(ids.length * backends.wasm.config.vocabSize);
        expect(maxAbsDiff(a, b)).toBeLessThanOrEqual(tolerance(b));
      });

      it('rerotateKeys leaves the same keys, within 1e-5 relative, under both', async () => {
        const e = readExpected(name);
        const ids = e.prompt.slice(0, 64);
        const schedule = createRopeSchedule(backends.wasm.config.rope);
        const short = schedule.regimeFor(1);
        const long = schedule.regimeFor(schedule.threshold === undefined ? 1 << 20 : schedule.threshold + 1);
        const keys = await Promise.all(
          [backends.wasm, backends.typescript].map(async (backend) => {
            const cache = backend.createCache();
            const positions = Int32Array.from(ids, (_, i) => i);
            await backend.forward({ rows: [{ tokens: ids, positions, cache, regime: short, logits: 0 }] });
            await backend.rerotateKeys!(cache, long);
            expect(cache.uniformRegime()).toBe(long);
            const all = Array.from({ length: backend.config.numLayers }, (_, l) => readCpuLayerKeys(cache, l));
            cache.dispose();
            return all;
          }),
        );
        for (let l = 0; l < keys[0]!.length; l++) expect(maxAbsDiff(keys[0]![l]!, keys[1]![l]!), `layer ${l}`).toBeLessThanOrEqual(tolerance(keys[1]![l]!));
      });
    });
  }
});
