import { type CachePolicy, PrefixCache, Session, wrapBackend } from '@ropeswitch/core';
import { randomIds, snapshot } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';
import { describe, expect, it } from 'vitest';
import { preEstimate } from './pre-estimate.js';
import { rePrefill } from './re-prefill.js';
import { rerotate } from './rerotate.js';
import { shadowPrefill } from './shadow-prefill.js';
import { stale } from './stale.js';
import { warnOnly } from './warn-only.js';
import { when } from './when.js';

const models = useTinyModels();

describe('staleKeys: what a chain does with cached keys of another regime', () => {
  it('the first policy that says decides; a chain where none does keeps them', () => {
    const b = models.longrope.backend;
    const of = (...p: CachePolicy[]) => wrapBackend(b, ...p).staleKeys;
    expect(wrapBackend(b).staleKeys).toBe('keep');
    expect(of(stale(), warnOnly())).toBe('keep');
    expect(of(rePrefill())).toBe('rebuild');
    expect(of(preEstimate())).toBe('rebuild');
    expect(of(shadowPrefill())).toBe('rebuild');
    expect(of(warnOnly(), rePrefill())).toBe('rebuild');
    expect(of(rerotate(), rePrefill())).toBe('approximate');
    // A late shadow hands the row on: the next policy decides.
    expect(of(shadowPrefill({ late: 'pass' }), rerotate())).toBe('approximate');
    expect(of(shadowPrefill({ late: 'pass' }), rePrefill())).toBe('rebuild');
    expect(of(when(() => true, rePrefill(), shadowPrefill()))).toBe('rebuild');
    expect(of(when(() => true, rePrefill(), rerotate()))).toBe('approximate');
    expect(of(when(() => true, [warnOnly()]), rePrefill())).toBe('rebuild');
    // Wrapping a wrapped backend: its outer policies come first.
    expect(wrapBackend(wrapBackend(b, rePrefill()), rerotate()).staleKeys).toBe('approximate');
  });

  it('a prefix cached under the short regime is reused for a crossing prompt only through a chain that rebuilds, so a hit is always exact', async () => {
    const m = models.longrope;
    const system = randomIds(41, 10, m.vocab);
    const prompt = [...system, ...randomIds(42, 8, m.vocab)]; // 18 tokens: past the threshold (16)
    for (const [make, hits] of [[() => rePrefill(), 1], [() => rerotate(), 0], [() => warnOnly(), 0]] as const) {
      const prefixes = new PrefixCache({ maxBytes: 1 << 24 });
      const backend = wrapBackend(m.backend, make());
      const first = new Session(backend, { prefixCache: prefixes });
      await first.prefill(system);
      const second = new Session(backend, { prefixCache: prefixes });
      const got = await second.prefill(prompt);
      const fresh = new Session(wrapBackend(m.backend, make()));
      const want = await fresh.prefill(prompt);
      expect(prefixes.stats.hits).toBe(hits);
      expect(Array.from(got)).toEqual(Array.from(want));
      expect(snapshot(second.cache)).toEqual(snapshot(fresh.cache));
      for (const s of [first, second, fresh]) s.dispose();
    }
  });
});
