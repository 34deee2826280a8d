import { PrefixCache, Session, type ShadowStartEvent, wrapBackend } from '@ropeswitch/core';
import { randomIds, recording, snapshot } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';
import { describe, expect, it, vi } from 'vitest';
import { shadowPrefill } from './shadow-prefill.js';

const models = useTinyModels();

describe('shadowPrefill with a prefix cache', () => {
  it('a second sequence sharing a system prompt starts its long copy from the first one\'s, and still equals its solo run bit for bit', async () => {
    const m = models.longrope;
    const system = randomIds(61, 10, m.vocab);
    const prompts = [0, 1].map((i) => [...system, ...randomIds(62 + i, 3, m.vocab)]); // 13 tokens, in the window of threshold 16
    const steps = 6; // past the crossing (S = 17)
    const rec = recording(m.backend);
    const prefixes = new PrefixCache({ maxBytes: 1 << 24 });
    const backend = wrapBackend(rec, shadowPrefill());
    const run = async (session: Session, prompt: number[]) => {
      const logits = [await session.prefill(prompt, { plannedLength: prompt.length + steps })];
      for (let i = 0; i < steps; i++) logits.push(await session.forward([(i * 5 + 1) % m.vocab]));
      return logits;
    };
    const tokensRun = () => rec.calls.flat().reduce((n, r) => n + r.tokens.length, 0);
    const take = vi.spyOn(PrefixCache.prototype, 'take');
    const used: number[] = [];
    const sessions: Session[] = [];
    for (const prompt of prompts) {
      const before = tokensRun();
      const session = new Session(backend, { prefixCache: prefixes });
      const got = await run(session, prompt);
      used.push(tokensRun() - before);
      const solo = new Session(wrapBackend(m.backend, shadowPrefill()));
      const want = await run(solo, prompt);
      got.forEach((l, i) => expect(Array.from(l)).toEqual(Array.from(want[i]!)));
      expect(snapshot(session.cache)).toEqual(snapshot(solo.cache));
      solo.dispose();
      sessions.push(session);
    }
    const starts = sessions.map((s) => s.events.find((e): e is ShadowStartEvent => e.type === 'shadow-start'));
    expect(starts[0]!.prefixTokens).toBeUndefined();
    // The second copy started with the shared system prompt under the long regime.
    expect(starts[1]!.prefixTokens).toBe(system.length);
    // Its prompt and its copy each skipped the system prompt.
    expect(used[0]! - used[1]!).toBe(2 * system.length);
    // Every take, the session's and the copy's, asked for a copy with room for the whole plan (so neither grows after).
    expect(take.mock.calls.length).toBeGreaterThanOrEqual(3);
    for (const [, options] of take.mock.calls) expect(options.capacity).toBe(13 + steps);
    take.mockRestore();
    for (const s of sessions) s.dispose();
    prefixes.dispose();
  });

  it('a prompt run in chunks leaves its copy in the prefix cache once the whole prompt is in, not at the chunk where it caught up', async () => {
    const m = models.longrope;
    const system = randomIds(71, 12, m.vocab);
    const prompts = [0, 1].map((i) => [...system, ...randomIds(72 + i, 3, m.vocab)]); // 15 tokens, threshold 16
    const steps = 6;
    const prefixes = new PrefixCache({ maxBytes: 1 << 24 });
    const backend = wrapBackend(m.backend, shadowPrefill());
    const sessions: Session[] = [];
    for (const prompt of prompts) {
      const session = new Session(backend, { prefixCache: prefixes });
      // Chunks end at 5, 10 and 15: the copy starts (and catches up) in the second, inside the window (length > 8).
      const got = [await session.prefill(prompt, { plannedLength: prompt.length + steps, chunkSize: 5 })];
      for (let i = 0; i < steps; i++) got.push(await session.forward([(i * 3 + 2) % m.vocab]));
      const solo = new Session(wrapBackend(m.backend, shadowPrefill()));
      const want = [await solo.prefill(prompt, { plannedLength: prompt.length + steps })];
      for (let i = 0; i < steps; i++) want.push(await solo.forward([(i * 3 + 2) % m.vocab]));
      got.forEach((l, i) => expect(Array.from(l)).toEqual(Array.from(want[i]!)));
      solo.dispose();
      sessions.push(session);
    }
    const starts = sessions.map((s) => s.events.find((e): e is ShadowStartEvent => e.type === 'shadow-start'));
    expect(starts[0]!.atLength).toBe(10);
    // The first copy was shared with all 15 prompt tokens, so the second starts from the whole system prompt (10 if shared at its catch-up).
    expect(starts[1]!.prefixTokens).toBe(system.length);
    for (const s of sessions) s.dispose();
    prefixes.dispose();
  });
});
