import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type TensorDtype, loadWeights, parseModelConfig } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoResult, formatDemo, usage } from '../packages/cli/src/index.js';
import { hfDir, inputIds, maxAbsDiff, readExpected } from './support/fixtures.js';
import { type CliRun, runCli } from './support/run-cli.js';

// The `ropeswitch` command line, run in-process through `main(argv, io)` with captured output,
// plus one run of the built binary. Logits are compared with HF's at the fixtures' 1e-4.
const LOGIT_TOL = 1e-4;
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const seed1 = `${hfDir}seed1-gqa`;

/** A failed command: the exit code, nothing on stdout, one `ropeswitch: …` line on stderr and no stack. */
function expectFailure(r: CliRun, code: 1 | 2): string {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^ropeswitch: [^\n]+\n$/);
  expect(r.stderr).not.toContain('    at ');
  return r.stderr;
}

/** Parses stdout that must be exactly one line of JSON. */
function oneJsonLine(stdout: string): unknown {
  expect(stdout.endsWith('\n')).toBe(true);
  expect(stdout.slice(0, -1)).not.toContain('\n');
  return JSON.parse(stdout) as unknown;
}

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-cli-test-'));
  tempDirs.push(dir);
  return dir;
}

/** A writable copy of an HF fixture folder (the fixtures themselves are read-only). */
async function copyFixture(name: string): Promise<string> {
  const dir = await tempDir();
  for (const file of ['config.json', 'model.safetensors']) {
    await writeFile(join(dir, file), await readFile(join(hfDir, name, file)));
  }
  return dir;
}

// A developer's ROPESWITCH_DEBUG would add stack traces to every error this file checks.
let savedDebug: string | undefined;
beforeAll(() => {
  savedDebug = process.env.ROPESWITCH_DEBUG;
  delete process.env.ROPESWITCH_DEBUG;
});
afterAll(async () => {
  if (savedDebug !== undefined) process.env.ROPESWITCH_DEBUG = savedDebug;
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('make-tiny', () => {
  const shape = ['--original-max', '48', '--max-positions', '512', '--layers', '3', '--hidden', '48', '--heads', '6', '--kv-heads', '2', '--vocab', '97'];

  async function makeTiny(...extra: string[]): Promise<string> {
    const out = await tempDir();
    const r = await runCli(['make-tiny', '--out', out, ...shape, ...extra]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(out);
    return out;
  }

  it('writes an HF folder whose config has the requested shape', async () => {
    const out = await makeTiny('--seed', '3');
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
    const config = parseModelConfig(await readFile(join(out, 'config.json'), 'utf8'));
    expect(config.family).toBe('phi3');
    expect(config.originalMaxPositionEmbeddings).toBe(48);
    expect(config.maxPositionEmbeddings).toBe(512);
    expect(config.numLayers).toBe(3);
    expect(config.hiddenSize).toBe(48);
    expect(config.numHeads).toBe(6);
    expect(config.numKvHeads).toBe(2);
    expect(config.vocabSize).toBe(97);
    expect(config.headDim).toBe(8);

    const scaling = config.rope.scaling;
    if (scaling.type !== 'longrope') throw new Error(`expected longrope, got ${scaling.type}`);
    expect(scaling.originalMaxPositionEmbeddings).toBe(48);
    const { shortFactor: short, longFactor: long } = scaling;
    expect(short).toHaveLength(4);
    expect(long).toHaveLength(4);
    expect(short[0]).toBe(1);
    expect(short[short.length - 1]!).toBeGreaterThan(short[0]!);
    short.forEach((s, i) => expect(long[i]!, `pair ${i}`).toBeGreaterThan(s));
    for (let i = 1; i < long.length; i++) expect(long[i]!, `long pair ${i}`).toBeGreaterThan(long[i - 1]!);
  });

  it('is reproducible from its seed', async () => {
    const [a, b, c] = await Promise.all([makeTiny('--seed', '5'), makeTiny('--seed', '5'), makeTiny('--seed', '6')]);
    const bytes = async (dir: string) => readFile(join(dir, 'model.safetensors'));
    const [wa, wb, wc] = await Promise.all([bytes(a), bytes(b), bytes(c)]);
    expect(wa.equals(wb)).toBe(true);
    expect(wa.equals(wc)).toBe(false);
    expect(wa.length).toBe(wc.length);
  });

  it.each([
    ['bf16', 'BF16'],
    ['f16', 'F16'],
    ['f32', 'F32'],
  ] as const)('--dtype %s writes %s tensors that load', async (flag, dtype: TensorDtype) => {
    const out = await makeTiny('--dtype', flag);
    const weights = await loadWeights(out);
    try {
      expect(weights.names.length).toBe(1 + 3 * 6 + 2);
      for (const name of weights.names) expect(weights.info(name).dtype, name).toBe(dtype);
      const embed = weights.get('model.embed_tokens.weight', [97, 48]);
      expect(embed.every(Number.isFinite)).toBe(true);
      expect(embed.some((x) => x !== 0)).toBe(true);
    } finally {
      await weights.close();
    }
    // The model the command wrote runs: one row of the vocabulary size it asked for.
    const r = await runCli(['logits', '--model', out, '--ids', '1,2,96']);
    expect(r.code, r.stderr).toBe(0);
    const { logits } = oneJsonLine(r.stdout) as { logits: number[][] };
    expect(logits).toHaveLength(1);
    expect(logits[0]).toHaveLength(97);
  });
});

describe('logits', () => {
  const e = readExpected('seed1-gqa');

  it('prints one JSON line with the last position of the prompt, as HF computes it', async () => {
    const r = await runCli(['logits', '--model', seed1, '--ids', inputIds(e, e.full_forward_short).join(',')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const json = oneJsonLine(r.stdout) as { logits: number[][] };
    expect(Object.keys(json)).toEqual(['logits']);
    expect(json.logits).toHaveLength(1);
    expect(json.logits[0]).toHaveLength(128);
    expect(maxAbsDiff(json.logits[0]!, e.full_forward_short.logits)).toBeLessThanOrEqual(LOGIT_TOL);
  });

  it('--last 3 gives the last three rows past the threshold', async () => {
    const ids = inputIds(e, e.full_forward_long);
    const r = await runCli(['logits', '--model', seed1, '--ids', ids.join(','), '--last', '3']);
    expect(r.code, r.stderr).toBe(0);
    const { logits } = oneJsonLine(r.stdout) as { logits: number[][] };
    const expected = e.full_forward_long.logits.slice(-3);
    expect(expected).toHaveLength(3);
    expect(logits).toHaveLength(3);
    logits.forEach((row, i) => {
      expect(row).toHaveLength(128);
      expect(maxAbsDiff(row, expected[i]!), `row ${i}`).toBeLessThanOrEqual(LOGIT_TOL);
    });
  });
});

describe('generate', () => {
  interface GenerateJson {
    tokens: number[];
    logits: number[][];
    events: unknown[];
  }

  async function generateJson(name: string, prompt: number[], maxNewTokens: number): Promise<GenerateJson> {
    const r = await runCli(['generate', '--model', `${hfDir}${name}`, '--ids', prompt.join(','), '--max-new-tokens', String(maxNewTokens), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    return oneJsonLine(r.stdout) as GenerateJson;
  }

  function expectSteps(actual: number[][], expected: number[][]): void {
    expect(actual).toHaveLength(expected.length);
    actual.forEach((l, i) => expect(maxAbsDiff(l, expected[i]!), `step ${i}`).toBeLessThanOrEqual(LOGIT_TOL));
  }

  it('--json keeps the cache through the crossing, as a custom HF loop does (seed1-gqa)', async () => {
    const e = readExpected('seed1-gqa');
    const out = await generateJson('seed1-gqa', e.prompt, 16);
    expect(Object.keys(out).sort()).toEqual(['events', 'logits', 'tokens']);
    expect(out.tokens).toEqual(e.greedy_stale!.tokens);
    expectSteps(out.logits, e.greedy_stale!.logits);
    expect(out.events).toEqual([]);
  });

  it('--json equals HF generate when the threshold is never crossed (seed8-phi3-short-only)', async () => {
    const e = readExpected('seed8-phi3-short-only');
    const out = await generateJson('seed8-phi3-short-only', e.prompt, e.greedy_hf.max_new_tokens);
    expect(out.tokens).toEqual(e.greedy_hf.tokens);
    expectSteps(out.logits, e.greedy_hf.logits);
    expect(out.events).toEqual([]);
  });

  it('prints readable text that names the crossing step', async () => {
    const e = readExpected('seed1-gqa');
    const r = await runCli(['generate', '--model', seed1, '--ids', e.prompt.join(','), '--max-new-tokens', '16']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(() => JSON.parse(r.stdout) as unknown).toThrow();
    expect(r.stdout).toContain(`prompt (28 tokens): ${e.prompt.join(' ')}`);
    expect(r.stdout).toContain(`generated (16 tokens, policy stale): ${e.greedy_stale!.tokens.join(' ')}`);
    // Prompt 28, threshold 32: the forward of step 5 is the first over 32 tokens.
    expect(r.stdout).toMatch(/crossed the RoPE threshold \(32\) at step 5\b/);
  });

  it('reports no crossing when no forward ran past the threshold', async () => {
    // 5 new tokens after a 28-token prompt: forwards over 28…32 tokens, all in the short regime.
    const e = readExpected('seed1-gqa');
    const r = await runCli(['generate', '--model', seed1, '--ids', e.prompt.join(','), '--max-new-tokens', '5']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`generated (5 tokens, policy stale): ${e.greedy_stale!.tokens.slice(0, 5).join(' ')}`);
    expect(r.stdout).not.toContain('crossed');
  });

  type PolicyJson = Omit<GenerateJson, 'events'> & { events: { type: string; policy: string; atLength: number }[] };
  async function policyJson(policy: string): Promise<PolicyJson> {
    const e = readExpected('seed1-gqa');
    const r = await runCli(['generate', '--model', seed1, '--ids', e.prompt.join(','), '--max-new-tokens', '16', '--policy', policy, '--json']);
    expect(r.code, r.stderr).toBe(0);
    return oneJsonLine(r.stdout) as PolicyJson;
  }

  it.each(['re-prefill', 'shadow-prefill', 'pre-estimate'])('--policy %s: typed events in --json; the exact ones equal HF generate', async (policy) => {
    const e = readExpected('seed1-gqa');
    const out = await policyJson(policy);
    const types = out.events.map((x) => x.type);
    expect(out.events.every((x) => x.policy === policy)).toBe(true);
    if (policy === 'pre-estimate') {
      // Long factors from the first token: not HF generate's short-regime steps, one event at the prompt.
      expect(types).toEqual(['pre-estimate']);
      expect(out.events[0]!.atLength).toBe(28);
      return;
    }
    expect(out.tokens).toEqual(e.greedy_hf.tokens);
    expectSteps(out.logits, e.greedy_hf.logits);
    expect(types).toEqual(policy === 're-prefill' ? ['re-prefill'] : ['shadow-start', 'shadow-swap']);
    expect(out.events.at(-1)!.atLength).toBe(28 + e.greedy_hf.crossing_step!);
  });

  it('--policy warn-only: the stale tokens plus one regime-change event at the crossing', async () => {
    const e = readExpected('seed1-gqa');
    const out = await policyJson('warn-only');
    expect(out.tokens).toEqual(e.greedy_stale!.tokens);
    expect(out.events).toEqual([{ type: 'rope-regime-change', policy: 'warn-only', from: 'longrope:short', to: 'longrope:long', atLength: 33 }]);
  });

  it('--policy rerotate: one rerotate event, and the text output describes it', async () => {
    const out = await policyJson('rerotate');
    expect(out.events.map((x) => x.type)).toEqual(['rerotate']);
    const e = readExpected('seed1-gqa');
    const r = await runCli(['generate', '--model', seed1, '--ids', e.prompt.join(','), '--max-new-tokens', '16', '--policy', 'rerotate']);
    expect(r.stdout).toContain('event at length 33: rotated 32 cached keys longrope:short → longrope:long on the backend (rerotate)');
  });

  it('--temperature with --seed samples reproducibly; --top-k 1 is greedy', async () => {
    const e = readExpected('seed8-phi3-short-only');
    const base = ['generate', '--model', `${hfDir}seed8-phi3-short-only`, '--ids', e.prompt.join(','), '--max-new-tokens', '8', '--json'];
    const a = oneJsonLine((await runCli([...base, '--temperature', '1.5', '--seed', '7'])).stdout) as GenerateJson;
    const b = oneJsonLine((await runCli([...base, '--temperature', '1.5', '--seed', '7'])).stdout) as GenerateJson;
    const c = oneJsonLine((await runCli([...base, '--temperature', '1.5', '--seed', '8'])).stdout) as GenerateJson;
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    const k1 = oneJsonLine((await runCli([...base, '--temperature', '1.5', '--top-k', '1', '--seed', '3'])).stdout) as GenerateJson;
    expect(k1.tokens).toEqual(e.greedy_hf.tokens);
  });

  it('--prompt TEXT goes through the folder\'s tokenizer.json, and the text comes back', async () => {
    const dir = await copyFixture('seed8-phi3-short-only');
    // A word-level tokenizer over the 128 ids: "w0" … "w127", split on whitespace.
    const vocab = Object.fromEntries(Array.from({ length: 128 }, (_, i) => [`w${i}`, i]));
    await writeFile(
      join(dir, 'tokenizer.json'),
      JSON.stringify({
        version: '1.0',
        added_tokens: [],
        normalizer: null,
        pre_tokenizer: { type: 'Whitespace' },
        post_processor: null,
        decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
        model: { type: 'WordLevel', vocab, unk_token: 'w0' },
      }),
    );
    const e = readExpected('seed8-phi3-short-only');
    const text = e.prompt.map((id) => `w${id}`).join(' ');
    const r = await runCli(['generate', '--model', dir, '--prompt', text, '--max-new-tokens', '8', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = oneJsonLine(r.stdout) as GenerateJson & { text: string };
    expect(out.tokens).toEqual(e.greedy_hf.tokens);
    expect(out.text).toBe(e.greedy_hf.tokens.map((id) => `w${id}`).join(' '));
  });

  it('--prompt without a tokenizer.json: exit code 2, pointing to --ids', async () => {
    expect(expectFailure(await runCli(['generate', '--model', seed1, '--prompt', 'hello', '--max-new-tokens', '2']), 2)).toContain('--ids');
  });
});

describe('demo', () => {
  it('--json: the oracle copies everything, the stale cache breaks at or after the crossing', async () => {
    const r = await runCli(['demo', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    const result = oneJsonLine(r.stdout) as DemoResult;
    expect(result.promptLength).toBeLessThanOrEqual(result.threshold);
    expect(result.crossingStep).toBe(result.threshold - result.promptLength + 1);
    expect(result.crossingStep).toBeLessThan(result.target.length);
    const byName = new Map(result.runs.map((x) => [x.name, x]));
    const oracle = byName.get('oracle')!;
    const stale = byName.get('stale')!;
    expect(oracle.tokens).toEqual(result.target);
    expect(oracle.correct).toBe(result.target.length);
    expect(oracle.firstError).toBe(-1);
    expect(stale.tokens.slice(0, result.crossingStep)).toEqual(result.target.slice(0, result.crossingStep));
    expect(stale.firstError).toBeGreaterThanOrEqual(result.crossingStep);
    expect(stale.correct).toBeLessThan(oracle.correct);
    // Every exact policy copies like the oracle; warn-only is the stale run plus an event.
    for (const name of ['re-prefill', 'pre-estimate', 'shadow-prefill']) expect(byName.get(name)!.tokens, name).toEqual(result.target);
    expect(byName.get('warn-only')!.tokens).toEqual(stale.tokens);
    expect([...byName.keys()]).toEqual(['oracle', 'stale', 'warn-only', 're-prefill', 'rerotate', 'pre-estimate', 'shadow-prefill']);
    // The readable report of the same result tells the same story.
    const text = formatDemo(result, result.target.length - 1);
    const all = `${result.target.length}/${result.target.length}`;
    expect(text).toMatch(new RegExp(`^oracle +${all} correct, +${result.target.length - result.crossingStep}/${result.target.length - result.crossingStep} after the crossing, no errors`, 'm'));
    expect(text).toMatch(new RegExp(`^shadow-prefill +${all} correct`, 'm'));
    expect(text).toContain(`first wrong at ${stale.firstError}`);
  });

  it('refuses a copy whose prompt is already past the threshold', async () => {
    expect(expectFailure(await runCli(['demo', '--n', '70']), 2)).toContain('threshold');
  });

  it('refuses a copy too short to reach the threshold', async () => {
    // n = 10: prompt 12, copy 11 tokens, so the longest forward has 22 tokens, far below 64.
    expect(expectFailure(await runCli(['demo', '--n', '10', '--json']), 2)).toContain('does not cross');
    // Step i's forward covers prompt + i tokens. n = 31: the last forward has 33 + 31 = 64 tokens, never
    // past 64. n = 32: prompt 34, the forward of step 31 has 65 tokens, one step before the copy ends.
    expectFailure(await runCli(['demo', '--n', '31', '--json']), 2);
    const edge = oneJsonLine((await runCli(['demo', '--n', '32', '--json'])).stdout) as DemoResult;
    expect(edge.crossingStep).toBe(31);
    expect(edge.crossingStep).toBeLessThan(edge.target.length);
  });
});

describe('errors', () => {
  it('no arguments: a one-line usage error naming the commands, exit code 2', async () => {
    const message = expectFailure(await runCli([]), 2);
    expect(message).toContain('no command given');
    expect(message).toContain('make-tiny');
  });

  it('--help: usage on stdout and exit code 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${usage}\n`);
    expect(r.stderr).toBe('');
  });

  const ids = ['--ids', '1,2,3'];
  const model = ['--model', seed1];
  it.each<[string, string[], string]>([
    ['unknown command', ['frobnicate'], "unknown command 'frobnicate'"],
    ['unknown option', ['logits', ...model, ...ids, '--bogus'], '--bogus'],
    ['missing --model', ['logits', ...ids], '--model is required'],
    ['neither --ids nor --prompt', ['generate', ...model, '--max-new-tokens', '2'], 'exactly one of --ids and --prompt'],
    ['both --ids and --prompt', ['generate', ...model, ...ids, '--prompt', 'x', '--max-new-tokens', '2'], 'exactly one of --ids and --prompt'],
    ['--top-k without --temperature', ['generate', ...model, ...ids, '--max-new-tokens', '2', '--top-k', '3'], 'need --temperature'],
    ['--top-p out of range', ['generate', ...model, ...ids, '--max-new-tokens', '2', '--temperature', '1', '--top-p', '1.5'], '--top-p'],
    ['non-numeric --ids', ['logits', ...model, '--ids', 'a,b'], "'a,b'"],
    ['empty id in --ids', ['logits', ...model, '--ids', '1,,2'], "'1,,2'"],
    ['negative --ids', ['logits', ...model, '--ids=-1'], "'-1'"],
    ['negative --ids as a separate argument', ['logits', ...model, '--ids', '-1'], '--ids'],
    ['--last 0', ['logits', ...model, ...ids, '--last', '0'], '--last'],
    ['--last past the ids', ['logits', ...model, ...ids, '--last', '4'], '--last 4'],
    ['--max-new-tokens 0', ['generate', ...model, ...ids, '--max-new-tokens', '0'], '--max-new-tokens'],
    ['unknown --policy', ['generate', ...model, ...ids, '--max-new-tokens', '2', '--policy', 'bogus'], "--policy must be one of stale, warn-only, re-prefill, rerotate, pre-estimate, shadow-prefill, got 'bogus'"],
    ['unknown --backend', ['logits', ...model, ...ids, '--backend', 'bogus'], "--backend must be one of reference, onnxruntime, webgpu, got 'bogus'"],
    ['--dtype f64', ['make-tiny', '--out', join(tmpdir(), 'ropeswitch-never-written'), '--dtype', 'f64'], "--dtype must be one of f32, f16, bf16, got 'f64'"],
  ])('%s: exit code 2, one line', async (_, argv, mention) => {
    expect(expectFailure(await runCli(argv), 2)).toContain(mention);
  });

  it('a model folder that does not exist: exit code 1', async () => {
    const missing = join(tmpdir(), 'ropeswitch-no-such-model-dir');
    expect(expectFailure(await runCli(['logits', '--model', missing, ...ids]), 1)).toContain(missing);
  });

  it('an id outside the vocabulary: exit code 1', async () => {
    expect(expectFailure(await runCli(['logits', ...model, '--ids', '1,128']), 1)).toContain('vocabulary');
    expect(expectFailure(await runCli(['generate', ...model, '--ids', '500', '--max-new-tokens', '1']), 1)).toContain('vocabulary');
  });

  it('a malformed config.json: exit code 1', async () => {
    const dir = await copyFixture('seed1-gqa');
    await writeFile(join(dir, 'config.json'), '{"model_type": "phi3",\n  "vocab_size": \n');
    expect(expectFailure(await runCli(['logits', '--model', dir, ...ids]), 1)).toContain('config.json');
  });

  it('a truncated model.safetensors: exit code 1', async () => {
    const dir = await copyFixture('seed1-gqa');
    const bytes = await readFile(join(dir, 'model.safetensors'));
    for (const length of [0, 5, 100, bytes.length >> 1, bytes.length - 1]) {
      await writeFile(join(dir, 'model.safetensors'), bytes.subarray(0, length));
      expect(expectFailure(await runCli(['logits', '--model', dir, ...ids]), 1), `truncated to ${length} bytes`).toContain('model.safetensors');
    }
  });

  it('a long_factor of the wrong length: exit code 1, naming the field', async () => {
    const dir = await copyFixture('seed1-gqa');
    const json = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as { rope_scaling: { long_factor: number[] } };
    json.rope_scaling.long_factor = json.rope_scaling.long_factor.slice(1);
    await writeFile(join(dir, 'config.json'), JSON.stringify(json));
    expect(expectFailure(await runCli(['generate', '--model', dir, ...ids, '--max-new-tokens', '1']), 1)).toContain('rope_scaling.long_factor');
  });

  it('ROPESWITCH_DEBUG adds the stack trace before the one-line message', async () => {
    process.env.ROPESWITCH_DEBUG = '1';
    try {
      const r = await runCli(['logits', ...model, '--ids', '1,128']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('    at ');
      expect(r.stderr).toMatch(/\nropeswitch: [^\n]*vocabulary[^\n]*\n$/);
    } finally {
      delete process.env.ROPESWITCH_DEBUG;
    }
  });
});

describe('the built binary', () => {
  const execFileAsync = promisify(execFile);
  const bin = 'packages/cli/dist/bin.js';
  const env = { ...process.env };
  delete env.ROPESWITCH_DEBUG;
  const exec = (args: string[]) => execFileAsync(process.execPath, [bin, ...args], { cwd: repoRoot, env, timeout: 30_000 });

  it('prints only the JSON line, and finds its shipped model', async () => {
    const { stdout, stderr } = await exec(['logits', '--model', seed1, '--ids', '1,2,3']);
    expect(stderr).toBe('');
    const { logits } = oneJsonLine(stdout) as { logits: number[][] };
    expect(logits).toHaveLength(1);
    expect(logits[0]).toHaveLength(128);
    expect(logits[0]!.every(Number.isFinite)).toBe(true);

    const trained = await exec(['logits', '--model', 'trained', '--ids', '0,4,5,1', '--last', '2']);
    expect(trained.stderr).toBe('');
    expect((oneJsonLine(trained.stdout) as { logits: number[][] }).logits).toHaveLength(2);
  });

  it('exits 2 on a usage error with one line on stderr', async () => {
    const failure = await exec(['logits', '--model', seed1]).then(
      () => undefined,
      (error: unknown) => error as { code?: unknown; stdout?: unknown; stderr?: unknown },
    );
    expect(failure).toBeDefined();
    expect(failure!.code).toBe(2);
    expect(failure!.stdout).toBe('');
    expect(failure!.stderr).toBe('ropeswitch: logits: --ids is required\n');
  });
});
