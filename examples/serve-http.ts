// An OpenAI-style completions server over one BatchScheduler: the wiring an integrator needs to
// serve many clients on one model with per-sequence RoPE regimes. Each request is a session of the
// scheduler, so concurrent requests share backend steps (continuous batching) while each sequence
// keeps its own regime and cache policy, and gets the tokens it would get alone.
//
//   POST /v1/completions  { prompt: string | number[], max_tokens, stream?, temperature?, top_p?, seed?, stop?, ignore_eos? }
//   GET  /stats           scheduler steps vs forwards, requests, prefix cache
//
// A PrefixCache shared by the sessions lets a request that starts like an earlier one (a system
// prompt, the earlier turns of a chat) skip those tokens; its entries keep the regime of their
// keys, so a prefix cached below the threshold is reused past it only through the policy
// (shadowPrefill rebuilds it), never as stale keys.
//
// The built-in trained model has no tokenizer, so prompts are token ids ([BOS] x1..xn [SEP] copies
// x1..xn) and `text` is the ids joined by spaces, with `tokens` beside it; a model folder with a
// tokenizer.json also takes string prompts. `stop` takes token ids; the model's EOS stops too unless
// `ignore_eos` (vLLM's extension) is true.
// Greedy unless `temperature` > 0 (OpenAI's default is 1; greedy keeps outputs reproducible).
//
// It shows the wiring; it is NOT a production server: no authentication, no TLS, no request
// timeouts, one model, one process, and the whole body is read into memory (at most 1 MiB).
//
// `npx tsx examples/serve-http.ts` starts it on a free port of 127.0.0.1, sends three concurrent
// requests (one streaming), a repeat (served from the prefix cache) and a bad one, prints the
// results, the scheduler's batching and the prefix cache's hits, and shuts down. In-process: `const server = await startServer({ port: 0 }); ... await server.close();`
import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  BatchScheduler,
  type BatchSchedulerStats,
  type GenerateResult,
  type ModelConfig,
  PrefixCache,
  type PrefixCacheStats,
  RopeswitchError,
  type SamplingOptions,
  SessionError,
  type TextTokenizer,
  generate,
  loadCheckpoint,
  positionLimit,
  wrapBackend,
} from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';

export interface ServerOptions {
  /** Port to listen on (default 0: a free one, see {@link ServerHandle.url}). */
  readonly port?: number;
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string;
  /** HF model folder (default: the CLI's trained copy-task model, `TRAINED_MODEL_DIR`). */
  readonly modelDir?: string;
  /** Sequences generating at once (default 64); one more request is answered 429 `queue-full`. */
  readonly maxQueue?: number;
  /** Most rows in one backend step (the scheduler's default when absent). */
  readonly maxRows?: number;
  /** Byte budget of the prefix cache (default 64 MiB). */
  readonly prefixCacheBytes?: number;
}

/** What the server has done so far (also served as JSON on `GET /stats`). */
export interface ServerStats {
  /** Steps vs forwards: `maxForwardsInStep` > 1 means sequences shared a backend step. */
  readonly scheduler: BatchSchedulerStats;
  /** Hits, misses, tokens reused and bytes held by the sessions' shared prefix cache. */
  readonly prefixCache: PrefixCacheStats;
  /** Requests generating now, answered in full, cut off by their client, and refused with an error status. */
  readonly requests: { readonly active: number; readonly completed: number; readonly aborted: number; readonly rejected: number };
}

export interface ServerHandle {
  /** `http://host:port`, the port the server got. */
  readonly url: string;
  /** What the server has done so far, as `GET /stats` answers it. */
  stats(): ServerStats;
  /**
   * Stops accepting, lets the requests in flight finish (or, with `abort`, closes the scheduler so
   * they end at once with `scheduler-closed`), closes the connections, and disposes the prefix
   * cache and the backend. Calling it again returns the same promise.
   */
  close(options?: { readonly abort?: boolean }): Promise<void>;
}

/** The largest request body read (bytes). */
const MAX_BODY = 1 << 20;

/** A request the server refuses: an HTTP status and a stable code (the library's, where it raised one). */
class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A checked `/v1/completions` body. */
interface Completion {
  readonly prompt: number[];
  readonly maxTokens: number;
  readonly stream: boolean;
  readonly stopIds: number[];
  readonly sampling: SamplingOptions | undefined;
}

/** Loads the model, starts the scheduler and listens. */
export async function startServer(options: ServerOptions = {}): Promise<ServerHandle> {
  // Imported only when needed: the CLI package is here just for the folder of its bundled model.
  const modelDir = options.modelDir ?? (await import('@ropeswitch/cli')).TRAINED_MODEL_DIR;
  const { config, weights, tokenizer } = await loadCheckpoint(modelDir);
  const backend = new ReferenceBackend(config, weights);
  await weights.close();
  // One policy chain for every sequence: each decides for its own rows, so batching never mixes regimes.
  const scheduler = new BatchScheduler(wrapBackend(backend, shadowPrefill()), options.maxRows ? { maxRows: options.maxRows } : {});
  const prefixes = new PrefixCache({ maxBytes: options.prefixCacheBytes ?? 64 * 2 ** 20 });
  const maxQueue = options.maxQueue ?? 64;
  const modelName = modelDir.replace(/\/+$/, '').split('/').pop() ?? 'model';
  const counts = { active: 0, completed: 0, aborted: 0, rejected: 0 };
  const inFlight = new Set<Promise<void>>();
  let closing: Promise<void> | undefined;

  const stats = (): ServerStats => ({ scheduler: scheduler.stats, prefixCache: prefixes.stats, requests: { ...counts } });

  async function completions(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = parseCompletion(await readJson(req), config, tokenizer);
    // Each sequence has at most one forward waiting, so admitting at most maxQueue sequences
    // keeps the scheduler's queue from ever refusing a forward in the middle of a stream.
    if (counts.active >= maxQueue) throw new RequestError(429, 'queue-full', `${counts.active} sequences are generating (maxQueue ${maxQueue}): retry later`);
    counts.active++;
    // The response's 'close' before it finished means the client went away: abort its sequence only.
    const client = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) client.abort();
    };
    res.on('close', onClose);
    const session = scheduler.session({ prefixCache: prefixes });
    const id = `cmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const stream = request.stream ? new CompletionStream(res, { id, created, model: modelName }, tokenizer, request.stopIds) : undefined;
    try {
      const result = await generate(session, request.prompt, {
        maxNewTokens: request.maxTokens,
        stopIds: request.stopIds,
        signal: client.signal,
        collectLogits: false,
        ...(request.sampling ? { sampling: request.sampling } : {}),
        ...(stream ? { onToken: (token: number) => stream.token(token) } : {}),
      });
      const tokens = outputTokens(result);
      const finishReason = result.stoppedBy === 'stop-id' ? 'stop' : 'length';
      const usage = { prompt_tokens: request.prompt.length, completion_tokens: result.tokens.length, total_tokens: request.prompt.length + result.tokens.length };
      if (stream) stream.finish(finishReason, usage);
      else sendJson(res, 200, { id, object: 'text_completion', created, model: modelName, choices: [{ text: textOf(tokens, tokenizer), tokens, index: 0, logprobs: null, finish_reason: finishReason }], usage });
      counts.completed++;
    } catch (error) {
      if (client.signal.aborted) {
        counts.aborted++;
        return;
      }
      // Before the first token the status can still say what went wrong; after it, the stream says it.
      if (stream?.started) {
        counts.rejected++;
        stream.fail(asRequestError(error));
      } else throw error;
    } finally {
      session.dispose(); // frees its cache and the policy's shadow copy
      counts.active--;
      res.off('close', onClose);
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (closing) throw new RequestError(503, 'server-closing', 'the server is shutting down');
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/v1/completions') {
        if (req.method !== 'POST') throw new RequestError(405, 'method-not-allowed', `${req.method} ${path}: use POST`);
        await completions(req, res);
      } else if (path === '/stats' && req.method === 'GET') {
        sendJson(res, 200, stats());
      } else {
        throw new RequestError(404, 'not-found', `no route ${req.method} ${path}: POST /v1/completions, GET /stats`);
      }
    } catch (error) {
      counts.rejected++;
      const refused = asRequestError(error);
      if (!res.headersSent && !res.destroyed) sendJson(res, refused.status, { error: { message: refused.message, code: refused.code } }, closing !== undefined);
    }
  }

  const server = createServer((req, res) => {
    const handling = route(req, res);
    inFlight.add(handling);
    void handling.finally(() => inFlight.delete(handling));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { address, port } = server.address() as AddressInfo;
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}`;

  async function shutDown(abort: boolean): Promise<void> {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    // Abort: the scheduler refuses every further forward, so each in-flight generate ends with scheduler-closed.
    if (abort) await scheduler.close();
    await Promise.allSettled([...inFlight]);
    await scheduler.close();
    server.closeAllConnections();
    await closed;
    prefixes.dispose();
    await backend.dispose();
  }

  return {
    url,
    stats,
    close: ({ abort = false } = {}) => (closing ??= shutDown(abort)),
  };
}

/** Server-sent events of one streaming completion: a chunk per token, a last one with the finish reason, then `[DONE]`. */
class CompletionStream {
  private readonly tokens: number[] = [];
  private sentText = '';

  constructor(
    private readonly res: ServerResponse,
    private readonly head: { readonly id: string; readonly created: number; readonly model: string },
    private readonly tokenizer: TextTokenizer | undefined,
    private readonly stopIds: readonly number[],
  ) {}

  /** Whether the 200 and an event went out (headers are sent with the first token, so a refusal before it keeps its status). */
  get started(): boolean {
    return this.res.headersSent;
  }

  token(token: number): void {
    if (this.stopIds.includes(token)) return; // like OpenAI, the stop itself is not part of the text
    this.tokens.push(token);
    const text = textOf(this.tokens, this.tokenizer);
    // A text ending in U+FFFD is a multi-byte character cut in two: wait for the rest.
    if (text.endsWith('\uFFFD')) return;
    this.send(this.chunk(text.slice(this.sentText.length), [token], null));
    this.sentText = text;
  }

  finish(finishReason: string, usage: object): void {
    const text = textOf(this.tokens, this.tokenizer);
    this.send({ ...this.chunk(text.slice(this.sentText.length), [], finishReason), usage });
    this.res.end('data: [DONE]\n\n');
  }

  fail(error: RequestError): void {
    this.send({ error: { message: error.message, code: error.code } });
    this.res.end();
  }

  private chunk(text: string, tokens: number[], finishReason: string | null): object {
    return { ...this.head, object: 'text_completion', choices: [{ text, tokens, index: 0, logprobs: null, finish_reason: finishReason }] };
  }

  private send(event: object): void {
    if (!this.res.headersSent) this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    this.res.write(`data: ${JSON.stringify(event)}\n\n`);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new RequestError(413, 'body-too-large', `the request body is over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new RequestError(400, 'invalid-json', 'the request body is not valid JSON');
  }
}

function parseCompletion(body: unknown, config: ModelConfig, tokenizer: TextTokenizer | undefined): Completion {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RequestError(400, 'invalid-body', 'the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  const prompt = promptIds(b.prompt, tokenizer);
  const maxTokens = b.max_tokens;
  if (typeof maxTokens !== 'number' || !Number.isSafeInteger(maxTokens) || maxTokens < 1) {
    throw new RequestError(400, 'bad-max-tokens', `max_tokens must be a positive integer; got ${JSON.stringify(maxTokens)}`);
  }
  // Refused up front rather than failing at the first position past the limit, halfway through a stream.
  const limit = positionLimit(config);
  if (prompt.length + maxTokens > limit) {
    throw new RequestError(400, 'position-out-of-range', `prompt (${prompt.length} tokens) + max_tokens (${maxTokens}) is past the model's position limit ${limit}`);
  }
  for (const field of ['stream', 'ignore_eos'] as const) {
    if (b[field] !== undefined && typeof b[field] !== 'boolean') throw new RequestError(400, `bad-${field.replace('_', '-')}`, `${field} must be true or false`);
  }
  const stop = b.stop === undefined || b.stop === null ? [] : Array.isArray(b.stop) ? (b.stop as unknown[]) : [b.stop];
  if (!stop.every((id) => Number.isSafeInteger(id))) throw new RequestError(400, 'bad-stop-ids', 'stop takes token ids (an integer or a list of integers) in this example');
  for (const [field, value] of [['temperature', b.temperature], ['top_p', b.top_p], ['seed', b.seed]] as const) {
    if (value !== undefined && typeof value !== 'number') throw new RequestError(400, `bad-${field.replace('_', '-')}`, `${field} must be a number`);
  }
  const temperature = (b.temperature as number | undefined) ?? 0;
  const sampling: SamplingOptions | undefined =
    temperature === 0 ? undefined : { temperature, ...(b.top_p !== undefined ? { topP: b.top_p as number } : {}), ...(b.seed !== undefined ? { seed: b.seed as number } : {}) };
  return { prompt, maxTokens, stream: b.stream === true, stopIds: [...new Set([...(b.ignore_eos === true ? [] : config.eosTokenIds), ...(stop as number[])])], sampling };
}

function promptIds(prompt: unknown, tokenizer: TextTokenizer | undefined): number[] {
  if (prompt === undefined || prompt === null) throw new RequestError(400, 'missing-prompt', 'prompt is required: a string or a list of token ids');
  if (typeof prompt === 'string') {
    if (!tokenizer) throw new RequestError(400, 'no-tokenizer', 'this model folder has no tokenizer.json: send the prompt as a list of token ids');
    prompt = tokenizer.encode(prompt);
  }
  if (!Array.isArray(prompt) || !prompt.every((id) => Number.isSafeInteger(id))) throw new RequestError(400, 'bad-prompt', 'prompt must be a string or a list of integer token ids');
  if (prompt.length === 0) throw new RequestError(400, 'empty-input', 'the prompt has no tokens');
  return prompt as number[];
}

/** The generated tokens without the stop token that ended them. */
function outputTokens(result: GenerateResult): number[] {
  return result.stoppedBy === 'stop-id' ? result.tokens.slice(0, -1) : result.tokens;
}

function textOf(tokens: readonly number[], tokenizer: TextTokenizer | undefined): string {
  return tokenizer ? tokenizer.decode(tokens) : tokens.join(' ');
}

/** HTTP statuses of the library's error codes that are not the server's fault. */
const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  'queue-full': 429,
  'scheduler-closed': 503,
  'token-out-of-range': 400,
  'position-out-of-range': 400,
};

/**
 * The status and code of a failure. The library's typed errors keep their code, looked up through
 * their causes (a policy reports a refused shadow chunk as a PolicyError whose cause is the
 * scheduler's SessionError); a SessionError is bad input (sampling options and the like).
 */
function asRequestError(error: unknown): RequestError {
  if (error instanceof RequestError) return error;
  const message = error instanceof Error ? error.message : String(error);
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof RopeswitchError && STATUS_OF_CODE[e.code] !== undefined) return new RequestError(STATUS_OF_CODE[e.code]!, e.code, message);
  }
  if (error instanceof SessionError) return new RequestError(400, error.code, message);
  return new RequestError(500, 'internal', message);
}

function sendJson(res: ServerResponse, status: number, body: unknown, closeConnection = false): void {
  res.writeHead(status, { 'content-type': 'application/json', ...(closeConnection ? { connection: 'close' } : {}) });
  res.end(JSON.stringify(body));
}

// ---- the self-demo (`npx tsx examples/serve-http.ts`) ----

/** `[BOS] x1..xn [SEP]`: the trained model answers `x1..xn [EOS]`. */
function copyPrompt(n: number, seed: number): { prompt: number[]; content: number[] } {
  const content = Array.from({ length: n }, (_, i) => 4 + ((i * 7 + seed * 13 + ((i * i) % 5)) % 48));
  return { prompt: [0, ...content, 1], content };
}

interface CompletionBody {
  readonly choices: readonly { readonly text: string; readonly tokens: readonly number[]; readonly finish_reason: string | null }[];
  readonly usage?: { readonly prompt_tokens: number; readonly completion_tokens: number };
  readonly error?: { readonly message: string; readonly code: string };
}

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** The events of a streaming response, `[DONE]` left out. */
async function readEvents(response: Response): Promise<CompletionBody[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]')
    .map((e) => JSON.parse(e.slice('data: '.length)) as CompletionBody);
}

/** Sends one copy request and reads the answer, streamed or not. */
async function send(url: string, r: { readonly prompt: number[]; readonly n: number; readonly stream: boolean }): Promise<{ status: number; events: number; choice: CompletionBody['choices'][number] }> {
  const response = await post(url, { prompt: r.prompt, max_tokens: r.n + 1, stream: r.stream });
  if (!r.stream) return { status: response.status, events: 0, choice: ((await response.json()) as CompletionBody).choices[0]! };
  const events = (await readEvents(response)).map((e) => e.choices[0]!);
  const choice = { text: events.map((c) => c.text).join(''), tokens: events.flatMap((c) => c.tokens), finish_reason: events.at(-1)!.finish_reason };
  return { status: response.status, events: events.length, choice };
}

async function demo(): Promise<void> {
  const server = await startServer({ port: 0 });
  console.log(`serving at ${server.url}/v1/completions (trained copy model, threshold 64, position limit 256)`);
  const requests = [
    { name: 'A', n: 20, stream: false },
    { name: 'B', n: 40, stream: true },
    { name: 'C', n: 50, stream: false },
  ].map((r, i) => ({ ...r, ...copyPrompt(r.n, i + 1) }));
  // All three at once: the scheduler merges their forwards into shared steps. B and C cross the threshold while generating.
  const results = await Promise.all(requests.map((r) => send(server.url, r)));
  const { scheduler } = server.stats();
  // The same prompts one at a time, on a backend of their own: batching must not change a token.
  const { config, weights } = await loadCheckpoint((await import('@ropeswitch/cli')).TRAINED_MODEL_DIR);
  const soloBackend = wrapBackend(new ReferenceBackend(config, weights), shadowPrefill());
  await weights.close();
  for (const [i, r] of requests.entries()) {
    const { status, events, choice } = results[i]!;
    const solo = await generate(soloBackend, r.prompt, { maxNewTokens: r.n + 1, stopIds: config.eosTokenIds, collectLogits: false });
    const copied = r.content.filter((x, k) => choice.tokens[k] === x).length;
    const how = r.stream ? `streaming, ${events} events then [DONE]` : 'non-streaming';
    console.log(`request ${r.name} (n = ${r.n}, ${how}): HTTP ${status}, finish_reason ${choice.finish_reason}, copied ${copied}/${r.n}, tokens equal to a solo run: ${sameTokens(choice.tokens, outputTokens(solo))}`);
    console.log(`  text "${choice.text.slice(0, 40)}…"`);
  }
  await soloBackend.dispose();
  // C again: its prompt is in the prefix cache now, so only its last token runs before decoding.
  const reusedBefore = server.stats().prefixCache.hitTokens;
  const again = await send(server.url, requests[2]!);
  const reused = server.stats().prefixCache.hitTokens - reusedBefore;
  console.log(`repeat of C: HTTP ${again.status}, same tokens as before: ${sameTokens(again.choice.tokens, results[2]!.choice.tokens)}, prefix cache reused ${reused} of its ${requests[2]!.prompt.length} prompt tokens`);
  const tooLong = await post(server.url, { prompt: copyPrompt(200, 9).prompt, max_tokens: 201 });
  const refusal = ((await tooLong.json()) as CompletionBody).error!;
  console.log(`too long (n = 200): HTTP ${tooLong.status} ${refusal.code}: ${refusal.message}`);
  console.log(`scheduler, for A, B and C: ${scheduler.forwards} forwards in ${scheduler.steps} backend steps, up to ${scheduler.maxForwardsInStep} forwards (${scheduler.maxRowsInStep} rows, shadow chunks included) in one step`);
  const { prefixCache } = server.stats();
  console.log(`prefix cache: ${prefixCache.hits} hits, ${prefixCache.misses} misses, ${prefixCache.hitTokens} tokens reused, ${prefixCache.entries} entries of ${prefixCache.bytes} bytes`);
  await server.close();
  const refused = await fetch(`${server.url}/stats`).then(() => false, () => true);
  console.log(`closed: backend disposed, port refuses connections: ${refused}`);
}

function sameTokens(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((t, i) => t === b[i]);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await demo();
