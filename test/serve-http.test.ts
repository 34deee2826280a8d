import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type Backend, type GenerateOptions, generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type ServerHandle, type ServerStats, startServer } from '../examples/serve-http.js';
import { trainedDir } from './support/fixtures.js';

// examples/serve-http.ts in-process on 127.0.0.1, over the trained copy model (threshold 64,
// position limit 256, EOS 2): concurrent requests through one BatchScheduler, each checked against
// the same prompt generated alone with the server's policy.

interface Choice {
  readonly text: string;
  readonly tokens: number[];
  readonly finish_reason: string | null;
}
interface Body {
  readonly object?: string;
  readonly choices: Choice[];
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number; readonly total_tokens: number };
  readonly error?: { readonly message: string; readonly code: string };
}
interface Request {
  readonly prompt: number[];
  readonly max_tokens: number;
  readonly stream?: boolean;
  readonly temperature?: number;
  readonly seed?: number;
  readonly ignore_eos?: boolean;
  readonly stop?: number[];
}

const EOS = 2;

/** `[BOS] x1..xn [SEP]`: the model copies x1..xn and ends with EOS. */
const copyPrompt = (n: number, seed: number) => [0, ...Array.from({ length: n }, (_, i) => 4 + ((i * 11 + seed * 5 + ((i * i) % 7)) % 48)), 1];

let solo: Backend;
beforeAll(async () => {
  const { config, weights } = await loadCheckpoint(trainedDir);
  solo = wrapBackend(new ReferenceBackend(config, weights), shadowPrefill());
  await weights.close();
});
afterAll(() => solo.dispose());

/** The same request generated alone (the server's policy, greedy unless sampled): what the server must answer. */
async function alone(r: Request): Promise<{ tokens: number[]; finish: string }> {
  const options: GenerateOptions = {
    maxNewTokens: r.max_tokens,
    stopIds: [...(r.ignore_eos ? [] : [EOS]), ...(r.stop ?? [])],
    collectLogits: false,
    ...(r.temperature ? { sampling: { temperature: r.temperature, ...(r.seed !== undefined ? { seed: r.seed } : {}) } } : {}),
  };
  const result = await generate(solo, r.prompt, options);
  const stopped = result.stoppedBy === 'stop-id';
  return { tokens: stopped ? result.tokens.slice(0, -1) : result.tokens, finish: stopped ? 'stop' : 'length' };
}

const post = (server: ServerHandle, body: unknown, signal?: AbortSignal) =>
  fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...(signal ? { signal } : {}) });

/** Reads a server-sent-events body, calling `onEvent` as each event arrives; resolves with them all and whether `[DONE]` ended it. */
async function readStream(response: Response, onEvent?: (event: Body, index: number) => void): Promise<{ events: Body[]; done: boolean }> {
  expect(response.headers.get('content-type')).toBe('text/event-stream');
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: Body[] = [];
  let done = false;
  let buffer = '';
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (ended) break;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      expect(event.startsWith('data: ')).toBe(true);
      expect(done).toBe(false); // nothing after [DONE]
      if (event === 'data: [DONE]') done = true;
      else {
        events.push(JSON.parse(event.slice(6)) as Body);
        onEvent?.(events.at(-1)!, events.length - 1);
      }
    }
  }
  expect(buffer).toBe('');
  return { events, done };
}

/** What a client of either kind ends up with. */
async function answer(server: ServerHandle, r: Request): Promise<{ status: number; choice: Choice; usage: Body['usage'] }> {
  const response = await post(server, r);
  if (!r.stream) {
    const body = (await response.json()) as Body;
    expect(body.object).toBe('text_completion');
    return { status: response.status, choice: body.choices[0]!, usage: body.usage };
  }
  const { events, done } = await readStream(response);
  expect(done).toBe(true);
  const last = events.at(-1)!;
  // One event per output token, then the one with the finish reason (and usage).
  expect(events.slice(0, -1).every((e) => e.choices[0]!.tokens.length === 1 && e.choices[0]!.finish_reason === null)).toBe(true);
  const choices = events.map((e) => e.choices[0]!);
  return {
    status: response.status,
    choice: { text: choices.map((c) => c.text).join(''), tokens: choices.flatMap((c) => c.tokens), finish_reason: last.choices[0]!.finish_reason },
    usage: last.usage,
  };
}

async function expectAsAlone(server: ServerHandle, r: Request): Promise<void> {
  const [got, want] = await Promise.all([answer(server, r), alone(r)]);
  expect(got.status).toBe(200);
  expect(got.choice.tokens).toEqual(want.tokens);
  expect(got.choice.text).toBe(want.tokens.join(' '));
  expect(got.choice.finish_reason).toBe(want.finish);
  const completion = want.tokens.length + (want.finish === 'stop' ? 1 : 0);
  expect(got.usage).toEqual({ prompt_tokens: r.prompt.length, completion_tokens: completion, total_tokens: r.prompt.length + completion });
}

const getStats = async (server: ServerHandle) => (await (await fetch(`${server.url}/stats`)).json()) as ServerStats;

async function expectError(server: ServerHandle, body: unknown, status: number, code: string): Promise<void> {
  const response = await post(server, body);
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toBe('application/json');
  const { error } = (await response.json()) as Body;
  expect(error?.code).toBe(code);
  expect(error?.message.length).toBeGreaterThan(0);
}

describe('examples/serve-http.ts', () => {
  let server: ServerHandle;
  beforeAll(async () => {
    server = await startServer({ modelDir: trainedDir, port: 0 });
  });
  afterAll(() => server.close());

  it('answers concurrent requests, streaming and not, each as the prompt generated alone, in shared steps', async () => {
    const requests: Request[] = [
      { prompt: copyPrompt(20, 1), max_tokens: 21 },
      { prompt: copyPrompt(40, 2), max_tokens: 41, stream: true }, // crosses the threshold (64) at token 23
      { prompt: copyPrompt(50, 3), max_tokens: 51 },
      { prompt: copyPrompt(60, 4), max_tokens: 61, stream: true },
      { prompt: copyPrompt(30, 5), max_tokens: 12 }, // stops at max_tokens
      { prompt: copyPrompt(45, 6), max_tokens: 30, temperature: 0.9, seed: 7, stream: true },
      { prompt: copyPrompt(25, 7), max_tokens: 26, stop: [copyPrompt(25, 7)[10]!] },
    ];
    const before = await getStats(server);
    await Promise.all(requests.map((r) => expectAsAlone(server, r)));
    const { scheduler, requests: counts } = await getStats(server);
    expect(scheduler.forwards).toBeGreaterThan(before.scheduler.forwards);
    expect(scheduler.maxForwardsInStep).toBeGreaterThan(1);
    // Batched: far fewer backend steps than forwards.
    expect(scheduler.steps - before.scheduler.steps).toBeLessThan((scheduler.forwards - before.scheduler.forwards) / 2);
    expect(counts.active).toBe(0);
    expect(counts.completed - before.requests.completed).toBe(requests.length);
  });

  it('refuses bad input with 400 and the code of the check or of the library', async () => {
    await expectError(server, '{"prompt": [0, 4', 400, 'invalid-json');
    await expectError(server, '[1, 2]', 400, 'invalid-body');
    await expectError(server, { max_tokens: 4 }, 400, 'missing-prompt');
    await expectError(server, { prompt: [], max_tokens: 4 }, 400, 'empty-input');
    await expectError(server, { prompt: [0, 4.5], max_tokens: 4 }, 400, 'bad-prompt');
    await expectError(server, { prompt: 'hello', max_tokens: 4 }, 400, 'no-tokenizer');
    for (const max_tokens of [0, -1, 1.5, '4', null, undefined]) await expectError(server, { prompt: [0, 4, 1], max_tokens }, 400, 'bad-max-tokens');
    await expectError(server, { prompt: [0, 4, 1], max_tokens: 4, stream: 'yes' }, 400, 'bad-stream');
    await expectError(server, { prompt: [0, 4, 1], max_tokens: 4, stop: ['\n'] }, 400, 'bad-stop-ids');
    // Past the position limit (256): refused before anything runs, streaming or not.
    await expectError(server, { prompt: copyPrompt(200, 1), max_tokens: 60 }, 400, 'position-out-of-range');
    await expectError(server, { prompt: copyPrompt(200, 1), max_tokens: 60, stream: true }, 400, 'position-out-of-range');
    // The library's own errors, raised before the first token, keep their codes (a stream too: no event was sent).
    await expectError(server, { prompt: [0, 99, 1], max_tokens: 4 }, 400, 'token-out-of-range');
    await expectError(server, { prompt: [0, 99, 1], max_tokens: 4, stream: true }, 400, 'token-out-of-range');
    await expectError(server, { prompt: [0, 4, 1], max_tokens: 4, temperature: -1 }, 400, 'bad-temperature');
    const notFound = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(notFound.status).toBe(404);
    const wrongMethod = await fetch(`${server.url}/v1/completions`);
    expect(wrongMethod.status).toBe(405);
    expect(((await wrongMethod.json()) as Body).error?.code).toBe('method-not-allowed');
    // Nothing was left generating, and the server still answers.
    expect((await getStats(server)).requests.active).toBe(0);
    await expectAsAlone(server, { prompt: copyPrompt(10, 9), max_tokens: 11 });
  });

  it('reuses cached prefixes, also across the threshold, with the tokens of a run alone', async () => {
    const repeated: Request = { prompt: copyPrompt(35, 21), max_tokens: 36 };
    await expectAsAlone(server, repeated);
    const before = (await getStats(server)).prefixCache;
    await expectAsAlone(server, { ...repeated, stream: true });
    const after = (await getStats(server)).prefixCache;
    // The prompt, and (it crosses) its long copy, which starts from the first run's copy.
    expect(after.hits).toBe(before.hits + 2);
    expect(after.hitTokens - before.hitTokens).toBeGreaterThan(repeated.prompt.length - 1); // the prompt: all but the token whose logits start the decode
    // 64 prompt tokens are below the threshold (64), 72 past it: the second starts with the first's
    // 63 cached short-regime tokens, which the policy must not use as they are.
    await expectAsAlone(server, { prompt: copyPrompt(62, 22), max_tokens: 63 });
    await expectAsAlone(server, { prompt: copyPrompt(70, 22), max_tokens: 71, stream: true });
    expect(after.bytes).toBeGreaterThan(0);
  });

  it('a client leaving mid-stream aborts its sequence only', async () => {
    const before = await getStats(server);
    const others: Request[] = [
      { prompt: copyPrompt(40, 11), max_tokens: 41 },
      { prompt: copyPrompt(55, 12), max_tokens: 56, stream: true },
    ];
    const client = new AbortController();
    // Long enough (no EOS, 150 tokens) that the server is still generating it when the client leaves.
    const leaving = post(server, { prompt: copyPrompt(50, 13), max_tokens: 150, stream: true, ignore_eos: true }, client.signal).then((response) =>
      readStream(response, (_event, i) => {
        if (i === 1) client.abort();
      }),
    );
    const checked = Promise.all(others.map((r) => expectAsAlone(server, r)));
    await expect(leaving).rejects.toThrow();
    await checked;
    // The server noticed, aborted that generate and disposed its session.
    await vi.waitFor(async () => expect((await getStats(server)).requests).toMatchObject({ active: 0, aborted: before.requests.aborted + 1 }));
    const after = await getStats(server);
    expect(after.requests.completed - before.requests.completed).toBe(2);
    // The aborted sequence ran far fewer than its 150 forwards.
    expect(after.scheduler.forwards - before.scheduler.forwards).toBeLessThan(41 + 56 + 100);
    await expectAsAlone(server, { prompt: copyPrompt(50, 13), max_tokens: 51 });
  });
});

describe('examples/serve-http.ts backpressure and shutdown', () => {
  it('answers 429 queue-full past maxQueue sequences, and serves again once one ends', async () => {
    const server = await startServer({ modelDir: trainedDir, maxQueue: 1 });
    try {
      let second: Promise<Response> | undefined;
      const first = post(server, { prompt: copyPrompt(20, 1), max_tokens: 200, stream: true, ignore_eos: true }).then((response) =>
        readStream(response, (_event, i) => {
          if (i === 0) second = post(server, { prompt: copyPrompt(20, 2), max_tokens: 21 });
        }),
      );
      const { events, done } = await first;
      expect(done).toBe(true);
      expect(events.flatMap((e) => e.choices[0]!.tokens)).toHaveLength(200);
      const refused = await second!;
      expect(refused.status).toBe(429);
      expect(((await refused.json()) as Body).error?.code).toBe('queue-full');
      await expectAsAlone(server, { prompt: copyPrompt(20, 2), max_tokens: 21 });
      expect((await getStats(server)).requests.rejected).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('close() lets a request in flight finish, then the port refuses', async () => {
    const server = await startServer({ modelDir: trainedDir });
    const r: Request = { prompt: copyPrompt(50, 3), max_tokens: 51, stream: true };
    let closed: Promise<void> | undefined;
    const streamed = post(server, r).then((response) =>
      readStream(response, (_event, i) => {
        if (i === 0) closed = server.close();
      }),
    );
    const { events, done } = await streamed;
    await closed;
    expect(done).toBe(true);
    expect(events.flatMap((e) => e.choices[0]!.tokens)).toEqual((await alone(r)).tokens);
    expect(server.stats().requests).toMatchObject({ active: 0, completed: 1 });
    const refused = await fetch(`${server.url}/stats`).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(TypeError);
    expect(((refused as TypeError).cause as { code?: string }).code).toBe('ECONNREFUSED');
    await expect(server.close()).resolves.toBeUndefined(); // closing twice is fine
  });

  it('close({ abort: true }) ends the streams in flight with scheduler-closed', async () => {
    const server = await startServer({ modelDir: trainedDir });
    let closed: Promise<void> | undefined;
    const streamed = post(server, { prompt: copyPrompt(30, 4), max_tokens: 200, stream: true, ignore_eos: true }).then((response) =>
      readStream(response, (_event, i) => {
        if (i === 0) closed = server.close({ abort: true });
      }),
    );
    const { events, done } = await streamed;
    await closed;
    expect(done).toBe(false);
    expect(events.at(-1)!.error, JSON.stringify(events.at(-1))).toMatchObject({ code: 'scheduler-closed' });
    expect(events.length).toBeLessThan(200);
    expect(server.stats().requests).toMatchObject({ active: 0, completed: 0 });
    await expect(fetch(`${server.url}/stats`)).rejects.toThrow();
  });
});
