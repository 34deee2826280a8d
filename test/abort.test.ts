/**
 * Aborts at every point of a generation that crosses the RoPE threshold, for every policy chain,
 * on a LongRoPE and a dynamic-NTK tiny model: right before each backend call (its first signal
 * check throws), between two layers of a call in flight (at a seeded-random signal check of the
 * reference backend), and between forwards (from `onToken` after every step, and from `onEvent`
 * right after a re-prefill, a shadow start or swap, or a rerotation was reported). Each abort:
 * - rejects `generate()` with the signal's own reason (an Error, a DOMException, a string…);
 * - stops it within one forward: no backend call starts after the abort;
 * - leaves the session holding what it held before the aborted forward, and usable: continued
 *   by hand, every later step's logits equal an un-aborted run's, bitwise.
 */
import { type Backend, SeededRandom, Session, type PolicyEvent, generate, wrapBackend } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TinyModel, randomIds, tinyDynamicNtk, tinyLongRope } from '@ropeswitch/testkit';
import { type AbortingBackend, abortingBackend } from './support/fault-injection.js';
import { POLICY_CASES, type PolicyCase } from './support/policy-cases.js';

const PROMPT = 10;
const MAX_NEW = 14; // planned length 24: crosses the threshold (16) at the forward of S = 17

interface ModelCase {
  readonly label: string;
  readonly seed: number;
  model: TinyModel;
  prompt: number[];
}
const models: ModelCase[] = [
  { label: 'LongRoPE', seed: 3 } as ModelCase,
  { label: 'dynamic NTK', seed: 5 } as ModelCase,
];

beforeAll(async () => {
  const [longrope, dynamic] = await Promise.all([tinyLongRope(), tinyDynamicNtk()]);
  models[0]!.model = longrope;
  models[1]!.model = dynamic;
  for (const m of models) m.prompt = randomIds(m.seed, PROMPT, m.model.vocab);
});

/** Aborts tried, by where they landed. */
const tally = new Map<string, number>();
const count = (key: string) => tally.set(key, (tally.get(key) ?? 0) + 1);
afterAll(() => {
  const total = [...tally.values()].reduce((a, b) => a + b, 0);
  console.info(`aborts tried: ${total} — ${[...tally.entries()].map(([k, v]) => `${k} ${v}`).join('; ')}`);
});

/** What one backend call of the undisturbed run carried. */
type CallKind = 'prefill' | 're-prefill' | 'shadow chunk' | 'decode';

interface Twin {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  readonly calls: CallKind[];
}

/** The undisturbed run, with what each backend call carried. */
async function twinRun(m: ModelCase, c: PolicyCase): Promise<Twin> {
  const calls: CallKind[] = [];
  const inner = m.model.backend;
  const classify: Backend = {
    ...abortingBackend(inner),
    forward(request) {
      const decode = calls.length > 0;
      calls.push(
        request.rows.some((r) => (r.logits ?? 1) === 0)
          ? 'shadow chunk'
          : decode && request.rows.some((r) => r.cache.length === 0 && r.tokens.length > 1)
            ? 're-prefill'
            : decode
              ? 'decode'
              : 'prefill',
      );
      return inner.forward(request);
    },
  };
  const result = await generate(wrapBackend(classify, ...c.make()), m.prompt, { maxNewTokens: MAX_NEW });
  return { tokens: result.tokens, logits: result.logits, calls };
}

/** The signal reasons tried (picked by a seeded draw per abort). */
const reasons = (): unknown[] => [new Error('stop'), new DOMException('stopped', 'AbortError'), 'a string reason', { why: 'an object' }, undefined];

interface AbortPlan {
  readonly label: string;
  /** Arms the abort on a fresh run; `onToken` / `onEvent` hooks for aborts between forwards. */
  readonly arm: (backend: AbortingBackend, controller: AbortController, reason: unknown) => {
    onToken?: (token: number, step: number) => void;
    onEvent?: (event: PolicyEvent) => void;
  };
}

/**
 * Runs `generate()` on a session until the planned abort, checks the rejection and that no call
 * started after it, then continues the session by hand and compares every later step with the twin.
 * Returns whether the abort fired (an onEvent plan whose event never comes does not).
 */
async function abortAndResume(m: ModelCase, c: PolicyCase, twin: Twin, plan: AbortPlan, reason: unknown): Promise<boolean> {
  const backend = abortingBackend(m.model.backend);
  const session = new Session(wrapBackend(backend, ...c.make()));
  const controller = new AbortController();
  const hooks = plan.arm(backend, controller, reason);
  let emitted = 0;
  const outcome = await generate(session, m.prompt, {
    maxNewTokens: MAX_NEW,
    signal: controller.signal,
    onToken: (token, step) => {
      emitted++;
      hooks.onToken?.(token, step);
    },
    ...(hooks.onEvent ? { onEvent: hooks.onEvent } : {}),
  }).then(
    (result) => ({ result }),
    (error: unknown) => ({ error }),
  );
  const where = `${c.name}, ${plan.label}`;
  if (!backend.fired) {
    expect('result' in outcome, `${where}: never aborted, so it must finish`).toBe(true);
    session.dispose();
    return false;
  }
  const stoppedAfterLastToken = 'result' in outcome;
  if (!stoppedAfterLastToken) {
    // The signal's own reason, never wrapped (the default reason when aborted with undefined).
    expect((outcome as { error: unknown }).error, where).toBe(controller.signal.reason);
  } else {
    // Aborted from the last onToken: generate() had no forward left to refuse.
    expect(emitted, where).toBe(MAX_NEW);
  }
  expect(backend.callsAfterAbort, `${where}: backend calls started after the abort`).toBe(0);
  // The session holds the prompt and every fed token before the aborted forward, nothing more.
  const held = emitted === 0 ? 0 : PROMPT + emitted - 1;
  expect(session.length, where).toBe(held);
  expect(Array.from(session.tokens()), where).toEqual([...m.prompt, ...twin.tokens.slice(0, Math.max(0, emitted - 1))].slice(0, held));
  // Usable: continued by hand (no signal), every later step equals the undisturbed run.
  let step = emitted === 0 ? 0 : emitted;
  if (step === 0) {
    expect(await session.prefill(m.prompt, { plannedLength: PROMPT + MAX_NEW }), `${where}: prefill again`).toEqual(twin.logits[0]);
    step = 1;
  }
  for (; step < MAX_NEW; step++) {
    expect(await session.forward([twin.tokens[step - 1]!]), `${where}: step ${step} after the abort`).toEqual(twin.logits[step]);
  }
  session.dispose();
  return true;
}

for (const m of models) {
  describe(`aborts at every point of a generation, ${m.label}`, () => {
    for (const c of POLICY_CASES) {
      it(`${c.name}: stops within one forward, rejects with the signal's reason, and the session continues exactly`, async () => {
        const twin = await twinRun(m, c);
        const rng = new SeededRandom(0xab047 ^ (models.indexOf(m) << 8) ^ POLICY_CASES.indexOf(c));
        const checksPerCall = m.model.config.numLayers + 1;
        const plans: (AbortPlan & { kind: string })[] = [];
        twin.calls.forEach((kind, call) => {
          const tag = (where: string) => `${where} ${kind === 'decode' ? 'a decode step' : `a ${kind}`}`;
          plans.push({ label: `call ${call}, before it reaches the backend`, kind: tag('right before'), arm: (b, ctl, r) => (b.arm({ call, check: 0 }, ctl, r), {}) });
          const check = 1 + rng.int(checksPerCall);
          plans.push({ label: `call ${call}, signal check ${check}`, kind: tag(check <= m.model.config.numLayers ? 'between layers of' : 'after the last layer of'), arm: (b, ctl, r) => (b.arm({ call, check }, ctl, r), {}) });
        });
        for (let s = 0; s < MAX_NEW; s++) {
          const next = twin.calls[s + 1];
          plans.push({ label: `onToken of step ${s}`, kind: next === 're-prefill' || next === 'shadow chunk' ? `between forwards, before a ${next}` : 'between other forwards', arm: (b, ctl, r) => ({ onToken: (_t, step) => step === s && b.abortNow(ctl, r) }) });
        }
        for (const type of ['re-prefill', 'shadow-start', 'shadow-swap', 'rerotate', 'rope-regime-change', 'pre-estimate'] as const) {
          plans.push({ label: `onEvent ${type}`, kind: `right after a ${type} event`, arm: (b, ctl, r) => ({ onEvent: (e) => e.type === type && !b.fired && b.abortNow(ctl, r) }) });
        }
        let tried = 0;
        for (const plan of plans) {
          const choices = reasons();
          const reason = choices[rng.int(choices.length)];
          if (await abortAndResume(m, c, twin, plan, reason)) {
            tried++;
            count(plan.kind);
          }
        }
        expect(tried).toBeGreaterThanOrEqual(3 * MAX_NEW);
      });
    }

    it('an already aborted signal: generate() rejects before any backend call, the session stays empty', async () => {
      const backend = abortingBackend(m.model.backend);
      const session = new Session(wrapBackend(backend, ...POLICY_CASES[0]!.make()));
      const controller = new AbortController();
      controller.abort(new Error('before the start'));
      await expect(generate(session, m.prompt, { maxNewTokens: 3, signal: controller.signal })).rejects.toBe(controller.signal.reason);
      expect(backend.calls).toBe(0);
      expect(session.length).toBe(0);
      count('before the start');
      session.dispose();
    });
  });
}
