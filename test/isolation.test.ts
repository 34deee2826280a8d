/**
 * Isolation between sequences: eight greedy sequences with prompts of different lengths (so they
 * cross the RoPE threshold at different steps, or never) share one policy-wrapped backend, for
 * every policy chain, on a LongRoPE and a dynamic-NTK tiny model. However they are scheduled —
 * round-robin with staggered starts, a seeded random order, all in step with `Promise.all`, or free
 * running concurrently — each produces exactly (bitwise: tokens, logits, events) what it produces
 * alone; as rows of one request per step, within 1e-5. A sequence disposed mid-run disturbs none
 * of the others, and sequences under different chains on one reference backend stay apart too.
 * (test/conformance covers two sequences per fixture; this covers many, every chain, concurrency.)
 */
import { type Backend, SeededRandom, wrapBackend } from '@ropeswitch/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { type TinyModel, randomIds, tinyDynamicNtk, tinyLongRope } from '@ropeswitch/testkit';
import { type GreedyTrace, SteppedSequence, batchedGreedy, worstStepDiff } from './conformance/policy-runs.js';
import { POLICY_CASES, type PolicyCase } from './support/policy-cases.js';

/** Prompt lengths: step i runs S = prompt + i (i < 12), so they cross the threshold (16) at steps 10, 8, 6, 5, 3, 2, or never (3 and 5). */
const PROMPT_LENGTHS = [3, 5, 7, 9, 11, 12, 14, 15];
const MAX_NEW = 12;
const BATCH_TOL = 1e-5;

interface ModelCase {
  readonly label: string;
  model: TinyModel;
  prompts: number[][];
}
const models: ModelCase[] = [{ label: 'LongRoPE' } as ModelCase, { label: 'dynamic NTK' } as ModelCase];

beforeAll(async () => {
  const [longrope, dynamic] = await Promise.all([tinyLongRope(), tinyDynamicNtk()]);
  models[0]!.model = longrope;
  models[1]!.model = dynamic;
  for (const m of models) m.prompts = PROMPT_LENGTHS.map((n, i) => randomIds(100 + i, n, m.model.vocab));
});

/** Each sequence on its own freshly wrapped backend. */
async function alone(m: ModelCase, c: PolicyCase): Promise<SteppedSequence[]> {
  const out: SteppedSequence[] = [];
  for (const p of m.prompts) out.push(await new SteppedSequence(wrapBackend(m.model.backend, ...c.make()), p, MAX_NEW).run());
  return out;
}

function expectSame(got: readonly GreedyTrace[], want: readonly GreedyTrace[], tol: number, mode: string): void {
  got.forEach((g, i) => {
    const where = `${mode}, sequence ${i} (prompt ${PROMPT_LENGTHS[i]})`;
    expect(g.tokens, where).toEqual(want[i]!.tokens);
    if (tol === 0) expect(g.logits, where).toEqual(want[i]!.logits);
    else expect(worstStepDiff(g.logits, want[i]!.logits), where).toBeLessThanOrEqual(tol);
    expect(g.events, where).toEqual(want[i]!.events);
  });
}

type Schedule = 'round-robin, staggered starts' | 'seeded random order' | 'in step (Promise.all)' | 'free running (Promise.all of whole runs)';
const SCHEDULES: Schedule[] = ['round-robin, staggered starts', 'seeded random order', 'in step (Promise.all)', 'free running (Promise.all of whole runs)'];

/** Runs the sequences on one shared backend under `schedule`. */
async function shared(m: ModelCase, backend: Backend, schedule: Schedule, seed: number): Promise<SteppedSequence[]> {
  const seqs = m.prompts.map((p) => new SteppedSequence(backend, p, MAX_NEW));
  switch (schedule) {
    case 'round-robin, staggered starts':
      // Sequence i starts in round i, so prompts run beside other sequences' decode steps.
      for (let round = 0; !seqs.every((q) => q.done); round++) {
        for (let i = 0; i < seqs.length; i++) if (i <= round && !seqs[i]!.done) await seqs[i]!.step();
      }
      break;
    case 'seeded random order': {
      const rng = new SeededRandom(seed);
      for (;;) {
        const open = seqs.filter((q) => !q.done);
        if (open.length === 0) break;
        await open[rng.int(open.length)]!.step();
      }
      break;
    }
    case 'in step (Promise.all)':
      while (!seqs.every((q) => q.done)) await Promise.all(seqs.filter((q) => !q.done).map((q) => q.step()));
      break;
    case 'free running (Promise.all of whole runs)':
      await Promise.all(seqs.map((q) => q.run()));
      break;
  }
  return seqs;
}

for (const m of models) {
  describe(`isolation: ${PROMPT_LENGTHS.length} sequences on one wrapped backend, crossing at different steps, ${m.label}`, () => {
    for (const c of POLICY_CASES) {
      it(`${c.name}: every schedule gives each sequence exactly what it gets alone; batched rows within ${BATCH_TOL}`, async () => {
        const want = await alone(m, c);
        // The sequences differ (else equality would prove little) and some cross while others do not.
        expect(new Set(want.map((q) => q.tokens.join(','))).size).toBe(want.length);
        for (const [k, schedule] of SCHEDULES.entries()) {
          const got = await shared(m, wrapBackend(m.model.backend, ...c.make()), schedule, 17 + k);
          expectSame(got, want, 0, schedule);
          for (const q of got) q.session.dispose();
        }
        const batched = await batchedGreedy(wrapBackend(m.model.backend, ...c.make()), m.model.schedule, m.prompts, MAX_NEW);
        expectSame(batched, want, BATCH_TOL, 'rows of one request');
        for (const q of want) q.session.dispose();
      });
    }

    it('a sequence disposed mid-run (its shadow copy and policy state dropped) disturbs none of the others', async () => {
      for (const c of POLICY_CASES) {
        const want = await alone(m, c);
        const backend = wrapBackend(m.model.backend, ...c.make());
        const seqs = m.prompts.map((p) => new SteppedSequence(backend, p, MAX_NEW));
        const dropped = new Set([2, 6]); // at round 5: one before its crossing (step 10), one after it (step 3)
        for (let round = 0; round < MAX_NEW; round++) {
          for (let i = 0; i < seqs.length; i++) {
            if (dropped.has(i) && round === 5) seqs[i]!.session.dispose();
            if (!seqs[i]!.session.cache.disposed) await seqs[i]!.step();
          }
        }
        const kept = seqs.flatMap((q, i) => (dropped.has(i) ? [] : [q]));
        expectSame(kept, want.filter((_, i) => !dropped.has(i)), 0, `${c.name}, two sequences disposed at round 5`);
        for (const q of [...seqs, ...want]) q.session.dispose();
      }
    });

    it('sequences under different chains on one reference backend, run concurrently, each get what they get alone', async () => {
      const chains = POLICY_CASES.slice(0, m.prompts.length);
      const want: SteppedSequence[] = [];
      for (const [i, c] of chains.entries()) want.push(await new SteppedSequence(wrapBackend(m.model.backend, ...c.make()), m.prompts[i]!, MAX_NEW).run());
      const got = chains.map((c, i) => new SteppedSequence(wrapBackend(m.model.backend, ...c.make()), m.prompts[i]!, MAX_NEW));
      await Promise.all(got.map((q) => q.run()));
      expectSame(got, want, 0, 'one chain per sequence');
      for (const q of [...got, ...want]) q.session.dispose();
    });
  });
}
