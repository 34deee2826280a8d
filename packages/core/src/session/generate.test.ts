import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Test-only: the CLI writes the seeded tiny checkpoints every test in the repo uses.
import { makeTinyModel } from '../../../cli/src/random-models/make-tiny-model.js';
import type { Backend } from '../backend/backend.js';
import type { KvCache } from '../cache/kv-cache.js';
import { loadCheckpoint } from '../checkpoint/load-checkpoint.js';
import { SessionError } from '../errors.js';
import type { CachePolicy, PolicyRow } from '../policy/cache-policy.js';
import type { PolicyEvent } from '../policy/policy-events.js';
import { withRowEvents } from '../policy/policy-result.js';
import { wrapBackend } from '../policy/wrap-backend.js';
import { SeededRandom } from '../random/seeded-random.js';
import { argmax } from './argmax.js';
import { type GenerateOptions, generate } from './generate.js';
import { greedyNoCache } from './greedy.js';
import { noCacheForward } from './no-cache-forward.js';
import { Session } from './session.js';
import type { TextTokenizer } from '../tokenizer/text-tokenizer.js';

// Threshold L = 32: every run here stays below it, so a cached run must equal the no-cache oracle.
const THRESHOLD = 32;
const VOCAB = 48;

let dir: string;
let backend: ReferenceBackend;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ropeswitch-generate-'));
  await makeTinyModel(dir, { seed: 11, originalMax: THRESHOLD, maxPositions: 128, hidden: 32, heads: 4, vocab: VOCAB });
  const { config, weights } = await loadCheckpoint(dir);
  try {
    backend = new ReferenceBackend(config, weights);
  } finally {
    await weights.close();
  }
});

afterAll(async () => {
  await backend?.dispose();
  await rm(dir, { recursive: true, force: true });
});

function randomTokens(seed: number, n: number): number[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, () => rng.int(VOCAB));
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** What a probe policy saw: every forward's row, and the caches released. */
interface Probe {
  readonly rows: PolicyRow[];
  readonly released: KvCache[];
  readonly backend: Backend;
}

/** `backend` wrapped by a policy that records rows and reports one regime-change event per forward. */
function probed(onForward?: (count: number) => void): Probe {
  const rows: PolicyRow[] = [];
  const released: KvCache[] = [];
  const policy: CachePolicy = {
    name: 'probe',
    async wrapForward({ request, next }) {
      rows.push(request.rows[0]!);
      onForward?.(rows.length);
      const result = await next(request);
      const atLength = request.rows[0]!.cache.length;
      return withRowEvents(result, 0, [{ type: 'rope-regime-change', policy: 'probe', from: 'a', to: 'b', atLength }]);
    },
    releaseSequence: (cache) => void released.push(cache),
  };
  return { rows, released, backend: wrapBackend(backend, policy) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('generate: greedy', () => {
  it('equals the no-cache oracle below the threshold (backend target)', async () => {
    const prompt = randomTokens(1, 12);
    const result = await generate(backend, prompt, { maxNewTokens: 8 });
    const oracle = await greedyNoCache(backend, prompt, { maxNewTokens: 8 });
    expect(result.tokens).toEqual(oracle.tokens);
    expect(result.logits).toHaveLength(8);
    result.logits.forEach((l, i) => expect(maxAbsDiff(l, oracle.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-4));
    expect(result.stoppedBy).toBe('max-new-tokens');
    expect(result.events).toEqual([]);
  });

  it('continues a session across turns; the last chosen token starts the next prompt', async () => {
    const prompt = randomTokens(2, 6);
    const session = new Session(backend);
    const first = await generate(session, prompt, { maxNewTokens: 4 });
    expect(session.length).toBe(prompt.length + 3); // the 4th token is chosen, not yet fed
    const turn = [first.tokens[3]!, ...randomTokens(3, 5)];
    const second = await generate(session, turn, { maxNewTokens: 3 });
    const whole = [...prompt, ...first.tokens.slice(0, 3), ...turn];
    expect(Array.from(session.tokens().slice(0, whole.length))).toEqual(whole);
    const oracle = await greedyNoCache(backend, whole, { maxNewTokens: 3 });
    expect(second.tokens).toEqual(oracle.tokens);
    expect(maxAbsDiff(second.logits[0]!, oracle.logits[0]!)).toBeLessThanOrEqual(1e-4);
    session.dispose();
  });

  it('stops after a stop id, which is the last token', async () => {
    const prompt = randomTokens(4, 10);
    const free = await generate(backend, prompt, { maxNewTokens: 10 });
    const at = free.tokens.findIndex((t, i) => i >= 2 && !free.tokens.slice(0, i).includes(t));
    expect(at).toBeGreaterThanOrEqual(2);
    const stopped = await generate(backend, prompt, { maxNewTokens: 10, stopIds: [free.tokens[at]!] });
    expect(stopped.tokens).toEqual(free.tokens.slice(0, at + 1));
    expect(stopped.stoppedBy).toBe('stop-id');
    expect(stopped.logits).toHaveLength(at + 1);
  });

  it('streams each token through onToken, in order, before the next forward', async () => {
    const probe = probed();
    const seen: [number, number, number][] = [];
    const result = await generate(probe.backend, randomTokens(5, 7), {
      maxNewTokens: 6,
      onToken: (token, step) => seen.push([token, step, probe.rows.length]),
    });
    expect(seen.map(([t]) => t)).toEqual(result.tokens);
    expect(seen.map(([, s]) => s)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(seen.map(([, , forwards]) => forwards)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('keeps no logits when collectLogits is false', async () => {
    const result = await generate(backend, randomTokens(6, 5), { maxNewTokens: 3, collectLogits: false });
    expect(result.tokens).toHaveLength(3);
    expect(result.logits).toEqual([]);
  });
});

describe('generate: text', () => {
  // A word-level stand-in for a tokenizer.json: "w7" ↔ 7.
  const words: TextTokenizer = {
    encode: (text) => text.split(' ').map((w) => Number(w.slice(1))),
    decode: (ids) => Array.from(ids, (id) => `w${id}`).join(' '),
  };

  it('encodes a text prompt with the tokenizer and decodes the tokens into text', async () => {
    const ids = [3, 9, 14, 2];
    const byIds = await generate(backend, ids, { maxNewTokens: 5 });
    const byText = await generate(backend, 'w3 w9 w14 w2', { maxNewTokens: 5, tokenizer: words });
    expect(byText.tokens).toEqual(byIds.tokens);
    expect(byText.text).toBe(byIds.tokens.map((t) => `w${t}`).join(' '));
    expect(byIds.text).toBeUndefined();
  });

  it('refuses a text prompt without a tokenizer (SessionError no-tokenizer)', async () => {
    await expect(generate(backend, 'w3 w9', { maxNewTokens: 2 })).rejects.toMatchObject({ name: 'SessionError', code: 'no-tokenizer' });
  });
});

describe('generate: teacher forcing', () => {
  it('returns the logits of a hand-written session loop fed the same tokens', async () => {
    const prompt = randomTokens(7, 9);
    const teacher = randomTokens(8, 5);
    const result = await generate(backend, prompt, { maxNewTokens: 8, teacherTokens: teacher });
    expect(result.stoppedBy).toBe('teacher-tokens');
    expect(result.logits).toHaveLength(teacher.length);

    const session = new Session(backend);
    const byHand = [await session.forward(prompt)];
    for (const t of teacher.slice(0, -1)) byHand.push(await session.forward([t]));
    session.dispose();
    result.logits.forEach((l, i) => expect(maxAbsDiff(l, byHand[i]!), `step ${i}`).toBeLessThanOrEqual(1e-6));
    expect(result.tokens).toEqual(byHand.map((l) => argmax(l)));
  });

  it('fed a greedy run’s tokens, lines up with that run step by step', async () => {
    const prompt = randomTokens(9, 8);
    const greedy = await generate(backend, prompt, { maxNewTokens: 6 });
    const session = new Session(backend);
    const forced = await generate(session, prompt, { maxNewTokens: 6, teacherTokens: greedy.tokens });
    expect(forced.tokens).toEqual(greedy.tokens);
    forced.logits.forEach((l, i) => expect(maxAbsDiff(l, greedy.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-6));
    expect(session.length).toBe(prompt.length + greedy.tokens.length - 1); // the last teacher token is not fed
    session.dispose();
  });

  it('rejects bad teacher tokens before running anything', async () => {
    const probe = probed();
    const bad: GenerateOptions['teacherTokens'][] = [[], [1, 2, 3, 4], [1, VOCAB], [1, -1], [0.5]];
    for (const teacherTokens of bad) {
      const err = await rejection(generate(probe.backend, [1, 2], { maxNewTokens: 3, teacherTokens }));
      expect(err).toBeInstanceOf(SessionError);
      expect((err as SessionError).code).toBe('bad-teacher-tokens');
    }
    const both = await rejection(generate(probe.backend, [1, 2], { maxNewTokens: 3, teacherTokens: [1], stopIds: [2] }));
    expect((both as SessionError).code).toBe('bad-stop-ids');
    expect(probe.rows).toHaveLength(0);
  });
});

describe('generate: sampling', () => {
  const prompt = randomTokens(10, 8);

  it('is deterministic for a seed and differs across seeds', async () => {
    const run = (seed: number) => generate(backend, prompt, { maxNewTokens: 10, sampling: { temperature: 1.5, seed } });
    const a = await run(1);
    expect((await run(1)).tokens).toEqual(a.tokens);
    const others = await Promise.all([2, 3, 4].map(async (seed) => (await run(seed)).tokens));
    expect(others.some((t) => t.join() !== a.tokens.join())).toBe(true);
  });

  it('top-k = 1, a tiny top-p and temperature 0 are greedy', async () => {
    const greedy = await generate(backend, prompt, { maxNewTokens: 8 });
    for (const sampling of [{ topK: 1, temperature: 2, seed: 5 }, { topP: 1e-9, temperature: 2, seed: 6 }, { temperature: 0 }]) {
      expect((await generate(backend, prompt, { maxNewTokens: 8, sampling })).tokens, JSON.stringify(sampling)).toEqual(greedy.tokens);
    }
  });

  it('validates options with SessionError codes, creating no cache', async () => {
    const probe = probed();
    const cases: [Partial<GenerateOptions>, string][] = [
      [{ sampling: { temperature: -1 } }, 'bad-temperature'],
      [{ sampling: { temperature: Number.NaN } }, 'bad-temperature'],
      [{ sampling: { topK: 0 } }, 'bad-top-k'],
      [{ sampling: { topP: 0 } }, 'bad-top-p'],
      [{ maxNewTokens: 0 }, 'bad-max-new-tokens'],
      [{ maxNewTokens: 2.5 }, 'bad-max-new-tokens'],
      [{ stopIds: [1.5] }, 'bad-stop-ids'],
    ];
    for (const [options, code] of cases) {
      const err = await rejection(generate(probe.backend, [1, 2], { maxNewTokens: 3, ...options }));
      expect(err, code).toBeInstanceOf(SessionError);
      expect((err as SessionError).code).toBe(code);
    }
    expect(((await rejection(generate(probe.backend, [], { maxNewTokens: 3 }))) as SessionError).code).toBe('empty-input');
    expect(probe.rows).toHaveLength(0);
  });
});

describe('generate: abort', () => {
  it('an aborted signal rejects with its reason before any forward; the session is untouched', async () => {
    const probe = probed();
    const session = new Session(probe.backend);
    const controller = new AbortController();
    const reason = new Error('user cancelled');
    controller.abort(reason);
    expect(await rejection(generate(session, [1, 2, 3], { maxNewTokens: 3, signal: controller.signal }))).toBe(reason);
    expect(probe.rows).toHaveLength(0);
    expect(session.length).toBe(0);
    // Without a reason the signal's default AbortError is thrown.
    const plain = new AbortController();
    plain.abort();
    expect(((await rejection(generate(session, [1], { maxNewTokens: 1, signal: plain.signal }))) as Error).name).toBe('AbortError');
    session.dispose();
  });

  it('an abort between steps stops the run and leaves the session usable', async () => {
    const prompt = randomTokens(11, 6);
    const session = new Session(backend);
    const controller = new AbortController();
    const tokens: number[] = [];
    const err = await rejection(
      generate(session, prompt, {
        maxNewTokens: 6,
        signal: controller.signal,
        onToken: (token, step) => {
          tokens.push(token);
          if (step === 2) controller.abort();
        },
      }),
    );
    expect((err as Error).name).toBe('AbortError');
    expect(tokens).toHaveLength(3);
    expect(session.length).toBe(prompt.length + 2);
    // Usable: continuing from the unfed token gives the oracle's next logits.
    const next = await session.forward([tokens[2]!]);
    const truth = await noCacheForward(backend, [...prompt, ...tokens]);
    expect(maxAbsDiff(next, truth)).toBeLessThanOrEqual(1e-4);
    session.dispose();
  });

  it('passes the signal to every forward: an abort inside one leaves its cache unchanged', async () => {
    const controller = new AbortController();
    const reason = new Error('stop now');
    const probe = probed((count) => {
      if (count === 3) controller.abort(reason);
    });
    const session = new Session(probe.backend);
    const err = await rejection(generate(session, [1, 2, 3, 4], { maxNewTokens: 5, signal: controller.signal }));
    expect(err).toBe(reason);
    expect(probe.rows.every((row) => row.cache === session.cache)).toBe(true);
    expect(probe.rows).toHaveLength(3);
    expect(session.length).toBe(5); // prompt + the first fed token; the aborted forward added nothing
    session.dispose();
  });
});

describe('generate: sessions, policies and events', () => {
  it('a backend target disposes its session (cache freed, policies told), also on error', async () => {
    const probe = probed();
    await generate(probe.backend, [1, 2, 3], { maxNewTokens: 3 });
    const cache = probe.rows[0]!.cache;
    expect(cache.disposed).toBe(true);
    expect(probe.released).toEqual([cache]);

    const controller = new AbortController();
    const failing = probed((count) => {
      if (count === 2) controller.abort();
    });
    await rejection(generate(failing.backend, [1, 2, 3], { maxNewTokens: 3, signal: controller.signal }));
    expect(failing.rows[0]!.cache.disposed).toBe(true);
    expect(failing.released).toHaveLength(1);
  });

  it('a session target is left open', async () => {
    const session = new Session(backend);
    await generate(session, [1, 2, 3], { maxNewTokens: 2 });
    expect(session.cache.disposed).toBe(false);
    session.dispose();
  });

  it('returns the events of this call and reports them through onEvent', async () => {
    const probe = probed();
    const streamed: PolicyEvent[] = [];
    const result = await generate(probe.backend, [1, 2, 3, 4], { maxNewTokens: 4, onEvent: (e) => streamed.push(e) });
    expect(result.events).toHaveLength(4); // prefill + 3 decode forwards
    expect(result.events.map((e) => e.atLength)).toEqual([4, 5, 6, 7]); // S after each forward
    expect(result.events.every((e) => e.type === 'rope-regime-change' && e.policy === 'probe')).toBe(true);
    expect(streamed).toEqual(result.events);

    // A continued session: only this call's events, also streamed to this call's onEvent.
    const session = new Session(probe.backend);
    await generate(session, [1, 2], { maxNewTokens: 2 });
    const again: PolicyEvent[] = [];
    const second = await generate(session, [5, 6], { maxNewTokens: 2, onEvent: (e) => again.push(e) });
    expect(second.events.map((e) => e.atLength)).toEqual([5, 6]);
    expect(again).toEqual(second.events);
    expect(session.events).toHaveLength(4);
    session.dispose();
  });

  it('tells policies the planned length and runs the prompt in chunks', async () => {
    const probe = probed();
    await generate(probe.backend, randomTokens(12, 7), { maxNewTokens: 5, chunkSize: 3 });
    const prefill = probe.rows.filter((r) => r.prefill);
    expect(prefill.map((r) => r.tokens.length)).toEqual([3, 3, 1]);
    expect(probe.rows.map((r) => r.plannedLength)).toEqual(new Array(3 + 4).fill(12));

    const session = new Session(probe.backend);
    await session.forward([1, 2, 3]);
    probe.rows.length = 0;
    await generate(session, [4, 5], { maxNewTokens: 6 });
    expect(probe.rows[0]!.plannedLength).toBe(3 + 2 + 6);
    session.dispose();
  });
});
