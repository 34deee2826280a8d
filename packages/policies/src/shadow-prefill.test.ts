import { BackendError, PolicyError, Session, type PolicyEvent, type ShadowSwapEvent, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { rerotate } from './rerotate.js';
import { shadowPrefill, type ShadowPrefillOptions } from './shadow-prefill.js';
import {
  type RecordedRow,
  type TinyModel,
  expectRejection,
  faulty,
  oracleDiffs,
  randomIds,
  recording,
  spanIds,
  teacherForce,
} from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

const swaps = (events: readonly PolicyEvent[]) => events.filter((e): e is ShadowSwapEvent => e.type === 'shadow-swap');
const kinds = (events: readonly PolicyEvent[]) => events.map((e) => `${e.type}@${e.atLength}`);
/** Rows of a call that build the shadow (no logits, on another cache than the session's). */
const shadowRows = (call: readonly RecordedRow[], session: Session) => call.filter((r) => r.cache !== session.cache && r.logits === 0);

/** A session whose 8-token prompt (L − window: the next token starts the copy) prepared a copy: that copy, and the recording beneath. */
async function preparedAtPrompt(ids: readonly number[], plannedLength: number) {
  const rec = recording(models.longrope.backend);
  const session = new Session(wrapBackend(rec, shadowPrefill()));
  const logits = await session.prefill(ids.slice(0, 8), { plannedLength });
  return { rec, session, logits, prepared: rec.created.at(-1)! };
}

async function expectExact(model: TinyModel, ids: readonly number[], steps: { length: number; logits: Float32Array }[]): Promise<void> {
  const diffs = await oracleDiffs(model, ids, steps);
  diffs.forEach((d, i) => expect(d, `S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
}

describe('shadowPrefill', () => {
  it.each([
    ['with a plan', 26],
    ['without a plan (assumed to cross)', undefined],
  ])('is exact against the oracle at every step across the crossing, %s', async (_how, planned) => {
    const ids = randomIds(71, 26, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill()));
    const steps = await teacherForce(session, ids, 8, planned);
    await expectExact(models.longrope, ids, steps);
    // Default window ceil(16 / 2) = 8: the copy starts at S = 9.
    expect(kinds(session.events)).toEqual(['shadow-start@9', 'shadow-swap@17']);
    expect(session.events[0]).toEqual({ type: 'shadow-start', policy: 'shadow-prefill', regime: 'longrope:long', atLength: 9 });
    expect(session.events[1]).toEqual({ type: 'shadow-swap', policy: 'shadow-prefill', regime: 'longrope:long', catchUpTokens: 0, atLength: 17 });
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
  });

  it('out of the window at the prompt: builds the shadow in chunks of at most `chunk` tokens per step, batched with the decode row', async () => {
    const ids = randomIds(72, 20, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    await teacherForce(session, ids, 8, 20);
    // Default window ceil(16 / 2) = 8 (S = 9..16), default chunk ceil(16 / 8) + 1 = 3; on schedule,
    // each step takes the 16 tokens' even share over the 8 steps: 2 (the cached ones, then the new).
    const byStep = rec.calls.map((c) => shadowRows(c, session).map((r) => r.tokens.length));
    expect(byStep).toEqual([[], [2], [2], [2], [2], [2], [2], [2], [2], [], [], [], []]);
    const built = rec.calls.flatMap((c) => shadowRows(c, session));
    const shadow = built[0]!.cache;
    expect(built.every((r) => r.cache === shadow && r.regime === 'longrope:long')).toBe(true);
    expect(built.flatMap((r) => r.positions)).toEqual(Array.from({ length: 16 }, (_, i) => i));
    expect(built.flatMap((r) => r.tokens)).toEqual(ids.slice(0, 16));
    // Shadow rows go first in their call, the decode row last with its logits.
    for (const call of rec.calls.slice(1, 9)) {
      expect(call).toHaveLength(2);
      expect(call[1]!.cache).toBe(session.cache);
    }
    // The crossing forward runs the new token on the shadow, which then becomes the session's cache.
    const crossing = rec.calls[9]!;
    expect(crossing).toHaveLength(1);
    expect(crossing[0]).toMatchObject({ cache: shadow, cacheLength: 16, tokens: [ids[16]], regime: 'longrope:long', logits: 1 });
    expect(shadow.disposed).toBe(true);
    expect(rec.calls[10]![0]!.cache).toBe(session.cache);
  });

  it('keeps the copy on schedule: behind it, up to chunk tokens a step; on time, the even share of what is left', async () => {
    const ids = randomIds(77, 20, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 8, chunk: 3 })));
    await session.prefill(ids.slice(0, 8), { plannedLength: 20 });
    // Two tokens in one decode forward: the copy starts at S = 10, with 16 tokens to build in ≈ 4
    // forwards of that size. It takes the 3 allowed, then the even share of the rest over the
    // (now one-token) steps left: 13 over 6 → 3, 10 over 5 → 2, … caught up at S = 16.
    const steps = [{ length: 10, logits: (await session.forward(ids.slice(8, 10))).subarray(-models.longrope.vocab) }];
    for (let i = 10; i < 20; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
    expect(rec.calls.slice(1, 8).map((c) => shadowRows(c, session).map((r) => r.tokens.length))).toEqual([[3], [3], [2], [2], [2], [2], [2]]);
    expect(kinds(session.events)).toEqual(['shadow-start@10', 'shadow-swap@17']);
    expect(swaps(session.events)[0]!.catchUpTokens).toBe(0);
    await expectExact(models.longrope, ids, steps);
  });

  it('honours window and chunk options: no decode forward runs more than chunk + 1 tokens per sequence', async () => {
    const ids = randomIds(73, 20, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 8, chunk: 3 })));
    const steps = await teacherForce(session, ids, 6, 20);
    await expectExact(models.longrope, ids, steps);
    const decode = rec.calls.slice(1);
    for (const call of decode) expect(call.reduce((n, r) => n + r.tokens.length, 0)).toBeLessThanOrEqual(4);
    expect(kinds(session.events)).toEqual(['shadow-start@9', 'shadow-swap@17']);
    expect(swaps(session.events)[0]!.catchUpTokens).toBe(0);
  });

  it('prompt inside the window: the shadow is built in the prompt forward (two rows), then one token per step', async () => {
    const ids = randomIds(74, 19, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    const steps = await teacherForce(session, ids, 14, 19);
    await expectExact(models.longrope, ids, steps);
    const prompt = rec.calls[0]!;
    expect(prompt).toHaveLength(2);
    expect(prompt[0]).toMatchObject({ tokens: ids.slice(0, 14), regime: 'longrope:long', logits: 0, cacheLength: 0 });
    expect(prompt[1]).toMatchObject({ tokens: ids.slice(0, 14), regime: 'longrope:short', cache: session.cache });
    expect(rec.calls.slice(1, 3).map((c) => shadowRows(c, session).map((r) => r.tokens.length))).toEqual([[1], [1]]);
    expect(kinds(session.events)).toEqual(['shadow-start@14', 'shadow-swap@17']);
    expect(swaps(session.events)[0]!.catchUpTokens).toBe(0);
  });

  it('window: threshold builds the copy with any prompt, then carries one copy token a step to the crossing, exact', async () => {
    const ids = randomIds(79, 20, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 16 })));
    const steps = await teacherForce(session, ids, 3, 20);
    await expectExact(models.longrope, ids, steps);
    expect(rec.calls[0]!.map((r) => [r.regime, r.tokens.length])).toEqual([
      ['longrope:long', 3],
      ['longrope:short', 3],
    ]);
    // Decode steps at S = 4..16 each carry the new token once more, on the copy; the crossing swaps it in.
    const byStep = rec.calls.slice(1).map((c) => shadowRows(c, session).map((r) => r.tokens.length));
    expect(byStep.slice(0, 13)).toEqual(Array.from({ length: 13 }, () => [1]));
    expect(byStep.slice(13).every((rows) => rows.length === 0)).toBe(true);
    expect(kinds(session.events)).toEqual(['shadow-start@3', 'shadow-swap@17']);
  });

  it('a chunked prompt that ends inside the window builds the whole shadow in its last chunk', async () => {
    const ids = randomIds(75, 18, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 4 })));
    await session.prefill(ids.slice(0, 15), { chunkSize: 6, plannedLength: 18 });
    expect(rec.calls.map((c) => shadowRows(c, session).map((r) => r.tokens.length))).toEqual([[], [], [15]]);
    const steps = [];
    for (let i = 15; i < 18; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
    await expectExact(models.longrope, ids, steps);
    expect(swaps(session.events).map((e) => e.catchUpTokens)).toEqual([0]);
  });

  it("a chunk too small to catch up with late: 'catch-up' finishes in the crossing forward, still exact", async () => {
    const ids = randomIds(76, 22, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 4, chunk: 2, late: 'catch-up' })));
    const steps = await teacherForce(session, ids, 8, 22);
    await expectExact(models.longrope, ids, steps);
    // 2 tokens per step over S = 13..16 leaves 8 of the 16 cached tokens to catch up.
    const [swap] = swaps(session.events);
    expect(swap).toMatchObject({ catchUpTokens: 8, atLength: 17 });
    const crossing = rec.calls[9]!;
    expect(crossing).toHaveLength(1);
    expect(crossing[0]!.tokens).toEqual(ids.slice(8, 17));
    expect(crossing[0]!.cacheLength).toBe(8);
  });

  it("late: 'pass' + rerotate(): rerotates at the crossing, keeps building, swaps the exact cache in later", async () => {
    const ids = randomIds(77, 24, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill({ window: 4, chunk: 3, late: 'pass' }), rerotate()));
    const steps = await teacherForce(session, ids, 8, 24);
    // Shadow: 3 tokens per step from S = 13: 12 of 16 at the crossing, caught up during S = 18, swapped at 19.
    expect(kinds(session.events)).toEqual(['shadow-start@13', 'rerotate@17', 'shadow-swap@19']);
    expect(swaps(session.events)[0]!.catchUpTokens).toBe(0);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    steps.forEach((s, i) => {
      if (s.length === 17 || s.length === 18) expect(diffs[i], `rerotated, S = ${s.length}`).toBeGreaterThan(1e-4);
      else expect(diffs[i], `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
    });
    // The crossing forward still ran a shadow chunk and never more than chunk + 1 tokens.
    expect(shadowRows(rec.calls[9]!, session).map((r) => r.tokens.length)).toEqual([3]);
    for (const call of rec.calls.slice(1)) expect(call.reduce((n, r) => n + r.tokens.length, 0)).toBeLessThanOrEqual(4);
  });

  it("late: 'pass' alone lets the crossing go stale, then swaps the exact cache in", async () => {
    const ids = randomIds(78, 22, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill({ window: 4, chunk: 3, late: 'pass' })));
    const steps = await teacherForce(session, ids, 8, 22);
    expect(kinds(session.events)).toEqual(['shadow-start@13', 'shadow-swap@19']);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    steps.forEach((s, i) => {
      if (s.length >= 19 || s.length <= 16) expect(diffs[i], `S = ${s.length}`).toBeLessThanOrEqual(1e-4);
    });
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
  });

  it("late: 'pass' with chunk 1 either refuses the options or still swaps the exact cache in", async () => {
    // One token per step only keeps pace with the sequence: a late shadow could never catch up,
    // and would cost an extra row at every step for the rest of the generation.
    let policy;
    try {
      policy = shadowPrefill({ chunk: 1, late: 'pass' });
    } catch (error) {
      expect(error).toMatchObject({ name: 'PolicyError', code: 'bad-option' });
      return;
    }
    const ids = randomIds(96, 40, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, policy));
    const steps = await teacherForce(session, ids, 8, 40);
    expect(swaps(session.events), 'the shadow never swapped in').toHaveLength(1);
    const diffs = await oracleDiffs(models.longrope, ids, steps);
    expect(diffs.at(-1)).toBeLessThanOrEqual(1e-4);
  });

  it('plannedLength at or below the threshold: no shadow, no extra rows', async () => {
    const ids = randomIds(79, 16, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    await teacherForce(session, ids, 8, 16);
    expect(session.events).toEqual([]);
    expect(rec.calls.every((c) => c.length === 1)).toBe(true);
    expect(rec.created).toHaveLength(1); // the session's own cache
  });

  it('a sequence that outgrows a plan below the threshold is re-prefilled at the crossing, exact', async () => {
    const ids = randomIds(80, 20, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill()));
    const steps = await teacherForce(session, ids, 8, 14);
    await expectExact(models.longrope, ids, steps);
    expect(session.events).toEqual([{ type: 're-prefill', policy: 'shadow-prefill', regime: 'longrope:long', tokens: 17, atLength: 17 }]);
  });

  it('a prompt already past the threshold needs no shadow', async () => {
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    await teacherForce(session, randomIds(81, 22, models.longrope.vocab), 18, 30);
    expect(session.events).toEqual([]);
    expect(rec.calls.every((c) => c.length === 1)).toBe(true);
  });

  it('dynamic NTK: behaves like rePrefill (a re-prefill at every step past the threshold, exact, no shadow)', async () => {
    const ids = randomIds(82, 21, models.dynamic.vocab);
    const rec = recording(models.dynamic.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    const steps = await teacherForce(session, ids, 10, 21);
    const diffs = await oracleDiffs(models.dynamic, ids, steps);
    diffs.forEach((d, i) => expect(d, `S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
    expect(kinds(session.events)).toEqual(['re-prefill@17', 're-prefill@18', 're-prefill@19', 're-prefill@20', 're-prefill@21']);
    expect(rec.calls.every((c) => c.length === 1)).toBe(true);
  });

  it('rejects bad options with PolicyError bad-option', () => {
    const bad: ShadowPrefillOptions[] = [
      { window: 0 },
      { window: -2 },
      { window: 1.5 },
      { window: Number.NaN },
      { chunk: 0 },
      { chunk: 2.5 },
      { chunk: Infinity },
      { late: 'later' as 'pass' },
    ];
    for (const options of bad) {
      let caught: unknown;
      try {
        shadowPrefill(options);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(options)).toBeInstanceOf(PolicyError);
      expect((caught as PolicyError).code).toBe('bad-option');
    }
    expect(() => shadowPrefill({ window: 1, chunk: 2, late: 'pass' })).not.toThrow();
  });

  it('releaseSequence (session dispose) disposes the shadow', async () => {
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    await session.prefill(randomIds(83, 14, models.longrope.vocab), { plannedLength: 30 });
    const shadow = shadowRows(rec.calls[0]!, session)[0]!.cache;
    expect(shadow.disposed).toBe(false);
    expect(shadow.length).toBe(14);
    session.dispose();
    expect(shadow.disposed).toBe(true);
    expect(session.cache.disposed).toBe(true);
  });

  it('releaseSequence of a sequence without a shadow changes nothing', async () => {
    const policy = shadowPrefill();
    const rec = recording(models.longrope.backend);
    const a = new Session(wrapBackend(rec, policy));
    const b = new Session(wrapBackend(rec, policy));
    await a.prefill(randomIds(84, 14, models.longrope.vocab), { plannedLength: 30 });
    await b.prefill([1, 2, 3], { plannedLength: 30 });
    const shadowOfA = shadowRows(rec.calls[0]!, a)[0]!.cache;
    b.dispose();
    expect(shadowOfA.disposed).toBe(false);
  });

  it('keeps each sequence its own shadow: two sessions on one policy stay exact', async () => {
    const policy = shadowPrefill({ window: 4 });
    const x = randomIds(85, 20, models.longrope.vocab);
    const y = randomIds(86, 20, models.longrope.vocab);
    const sx = new Session(wrapBackend(models.longrope.backend, policy));
    const sy = new Session(wrapBackend(models.longrope.backend, policy));
    const stepsX = [{ length: 9, logits: await sx.prefill(x.slice(0, 9), { plannedLength: 20 }) }];
    const stepsY = [{ length: 14, logits: await sy.prefill(y.slice(0, 14), { plannedLength: 20 }) }];
    for (let i = 0; i < 6; i++) {
      stepsX.push({ length: 10 + i, logits: await sx.forward([x[9 + i]!]) });
      stepsY.push({ length: 15 + i, logits: await sy.forward([y[14 + i]!]) });
    }
    await expectExact(models.longrope, x, stepsX);
    await expectExact(models.longrope, y, stepsY);
    expect(kinds(sy.events)).toEqual(['shadow-start@14', 'shadow-swap@17']);
    expect(kinds(sx.events)).toEqual(['shadow-start@13']);
  });

  it("a forward that ends at the window's start sets the copy up, so the step that starts it runs only its chunk", async () => {
    const ids = randomIds(94, 20, models.longrope.vocab);
    const { rec, session, logits: first, prepared: copy } = await preparedAtPrompt(ids, 20);
    expect(rec.calls).toHaveLength(1);
    expect(shadowRows(rec.calls[0]!, session)).toEqual([]);
    // Its storage is there, for the whole plan, made by the prompt's forward and not yet written.
    expect(rec.created).toHaveLength(2);
    expect(copy).not.toBe(session.cache);
    expect([copy.length, copy.disposed]).toEqual([0, false]);
    const { numLayers, numKvHeads, headDim } = models.longrope.backend.config;
    expect(copy.byteLength).toBeGreaterThanOrEqual(20 * 2 * numLayers * numKvHeads * headDim * 4);
    const steps = [{ length: 8, logits: first }];
    for (let i = 8; i < 20; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
    // The start builds into that copy and creates no other cache.
    expect(rec.created).toHaveLength(2);
    expect(shadowRows(rec.calls[1]!, session).map((r) => ({ cache: r.cache, tokens: r.tokens.length }))).toEqual([{ cache: copy, tokens: 2 }]);
    expect(kinds(session.events)).toEqual(['shadow-start@9', 'shadow-swap@17']);
    await expectExact(models.longrope, ids, steps);
  });

  it('a prepared copy the next forward does not start is freed: a crop back, or the sequence released', async () => {
    const ids = randomIds(95, 22, models.longrope.vocab);
    const alt = randomIds(96, 22, models.longrope.vocab);
    const { rec, session, prepared } = await preparedAtPrompt(ids, 22);
    // Rolled back below the window's start: that forward is idle, and the copy it did not start is gone.
    session.cache.crop(5);
    const seq = [...ids.slice(0, 5), ...alt.slice(5, 22)];
    const steps = [];
    for (let i = 5; i < 22; i++) {
      steps.push({ length: i + 1, logits: await session.forward([seq[i]!]) });
      if (i === 5) expect(prepared.disposed).toBe(true);
    }
    await expectExact(models.longrope, seq, steps);
    // Prepared again at S = 8, started from a fresh copy at S = 9.
    expect(rec.created).toHaveLength(3);
    expect(kinds(session.events)).toEqual(['shadow-start@9', 'shadow-swap@17']);
    session.dispose();

    const { session: other, prepared: unused } = await preparedAtPrompt(ids, 22);
    expect(unused.disposed).toBe(false);
    other.dispose();
    expect(unused.disposed).toBe(true);
  });

  it('a copy prepared for a sequence that then changes is not started: the start makes its own', async () => {
    const ids = randomIds(97, 20, models.longrope.vocab);
    const { session, prepared } = await preparedAtPrompt(ids, 20);
    // The cache is cropped and refilled to the same length: the copy's mirror no longer matches it,
    // and the next forward is a start, which makes its own.
    session.cache.crop(7);
    const steps = [{ length: 8, logits: await session.forward([ids[7]!]) }];
    expect(prepared.disposed).toBe(true);
    for (let i = 8; i < 20; i++) steps.push({ length: i + 1, logits: await session.forward([ids[i]!]) });
    await expectExact(models.longrope, ids, steps);
    expect(kinds(session.events)).toEqual(['shadow-start@9', 'shadow-swap@17']);
  });

  it('a user rolling the cache back (crop) inside the window keeps results exact', async () => {
    const ids = randomIds(87, 16, models.longrope.vocab);
    const alt = randomIds(88, 24, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill()));
    await session.prefill(ids.slice(0, 14), { plannedLength: 30 });
    await session.forward([ids[14]!]);
    await session.forward([ids[15]!]);
    // Roll back three tokens (the shadow is ahead of the sequence now) and continue differently.
    session.cache.crop(13);
    const seq = [...ids.slice(0, 13), ...alt.slice(13, 22)];
    const steps = [];
    for (let i = 13; i < 22; i++) steps.push({ length: i + 1, logits: await session.forward([seq[i]!]) });
    await expectExact(models.longrope, seq, steps);
    expect(kinds(session.events)).toEqual(['shadow-start@14', 'shadow-swap@17']);
  });

  it('a rollback below the window keeps the shadow it has and stays exact', async () => {
    const ids = randomIds(89, 15, models.longrope.vocab);
    const alt = randomIds(90, 22, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill()));
    await session.prefill(ids.slice(0, 15), { plannedLength: 30 });
    session.cache.crop(6);
    const seq = [...ids.slice(0, 6), ...alt.slice(6, 22)];
    const steps = [];
    for (let i = 6; i < 22; i++) steps.push({ length: i + 1, logits: await session.forward([seq[i]!]) });
    await expectExact(models.longrope, seq, steps);
    expect(swaps(session.events).map((e) => e.atLength)).toEqual([17]);
  });

  it('a rollback below the threshold after the swap re-prefills under the short regime, then shadows again, exact', async () => {
    const ids = randomIds(91, 20, models.longrope.vocab);
    const alt = randomIds(92, 22, models.longrope.vocab);
    const session = new Session(wrapBackend(models.longrope.backend, shadowPrefill({ window: 4 })));
    await teacherForce(session, ids, 8, 30);
    expect(spanIds(session.cache)).toEqual(['longrope:long']);
    session.cache.crop(10);
    const seq = [...ids.slice(0, 10), ...alt.slice(10, 22)];
    const steps = [];
    for (let i = 10; i < 22; i++) steps.push({ length: i + 1, logits: await session.forward([seq[i]!]) });
    await expectExact(models.longrope, seq, steps);
    expect(kinds(session.events).slice(2)).toEqual(['re-prefill@11', 'shadow-start@13', 'shadow-swap@17']);
  });

  it('a failed forward with a shadow chunk is a PolicyError naming the chunk; nothing moves and the retry is exact', async () => {
    const ids = randomIds(93, 20, models.longrope.vocab);
    let fail = false;
    const again = new Session(wrapBackend(faulty(models.longrope.backend, () => (fail ? new Error('flaky device') : undefined)), shadowPrefill()));
    await again.prefill(ids.slice(0, 13), { plannedLength: 20 });
    fail = true;
    const err = await expectRejection(again.forward([ids[13]!]), PolicyError, 'forward-failed');
    expect(err.message).toContain('chunk');
    expect(err.cause).toBeInstanceOf(BackendError);
    expect(again.length).toBe(13);
    fail = false;
    const out = [];
    for (let i = 13; i < 20; i++) out.push({ length: i + 1, logits: await again.forward([ids[i]!]) });
    await expectExact(models.longrope, ids, out);
    expect(swaps(again.events)).toHaveLength(1);
  });

  it('an aborted forward with a shadow chunk rejects with the signal reason, unwrapped, and moves nothing', async () => {
    const ids = randomIds(95, 15, models.longrope.vocab);
    const rec = recording(models.longrope.backend);
    const session = new Session(wrapBackend(rec, shadowPrefill()));
    await session.prefill(ids.slice(0, 14), { plannedLength: 30 });
    const shadow = shadowRows(rec.calls[0]!, session)[0]!.cache;
    const controller = new AbortController();
    controller.abort();
    await expect(session.forward([ids[14]!], { signal: controller.signal })).rejects.toBe(controller.signal.reason);
    expect(session.length).toBe(14);
    expect(shadow.length).toBe(14);
  });

  it('a backend that runs the shadow chunk and then fails the decode row leaves the shadow ahead; the next forward is exact', async () => {
    const ids = randomIds(94, 20, models.longrope.vocab);
    // maxRows 1: the wrapper splits each two-row forward, shadow chunk first.
    const rec = recording(models.longrope.backend, { maxRows: 1 });
    let failAt = -1;
    const backend = faulty(rec, (_req, call) => (call === failAt ? new Error('second half failed') : undefined));
    const session = new Session(wrapBackend(backend, shadowPrefill()));
    await session.prefill(ids.slice(0, 14), { plannedLength: 20 }); // two calls: shadow, then the prompt
    failAt = backend.calls + 1; // the decode row of the next forward
    await expect(session.forward([ids[14]!])).rejects.toBeInstanceOf(PolicyError);
    expect(session.length).toBe(14);
    const shadow = rec.calls[0]![0]!.cache;
    expect(shadow.length).toBe(15); // ahead of the sequence
    // Retry with another token: the shadow is cropped back and stays exact.
    const seq = [...ids.slice(0, 14), (ids[14]! + 1) % models.longrope.vocab, ...ids.slice(15)];
    const out = [];
    for (let i = 14; i < 20; i++) out.push({ length: i + 1, logits: await session.forward([seq[i]!]) });
    await expectExact(models.longrope, seq, out);
    expect(swaps(session.events).map((e) => [e.atLength, e.catchUpTokens])).toEqual([[17, 0]]);
  });
});
