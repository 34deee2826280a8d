import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Test-only: the CLI writes the seeded tiny checkpoints every test in the repo uses.
import { makeTinyModel } from '../../../cli/src/random-models/make-tiny-model.js';
import { loadCheckpoint } from '../checkpoint/load-checkpoint.js';
import { ConfigError } from '../errors.js';
import { loadTokenizer } from './load-tokenizer.js';

let root: string;
let count = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ropeswitch-tokenizer-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh folder holding `files` (objects are written as JSON, strings as they are). */
async function folder(files: Record<string, unknown>): Promise<string> {
  const dir = join(root, `case-${count++}`);
  await mkdir(dir);
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

function special(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** A word-level tokenizer split on whitespace (the shape of `tokenizers`' WordLevel + WhitespaceSplit). */
const WORD_LEVEL = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [special(0, '<unk>')],
  normalizer: null,
  pre_tokenizer: { type: 'WhitespaceSplit' },
  post_processor: null,
  decoder: null,
  model: { type: 'WordLevel', vocab: { '<unk>': 0, hello: 1, world: 2, the: 3, copy: 4 }, unk_token: '<unk>' },
};

/** A byte-level BPE (GPT-2 style) whose merges build "hello" and "Ġworld". */
function byteLevelBpe() {
  const vocab: Record<string, number> = { '<|endoftext|>': 0 };
  for (const c of ['h', 'e', 'l', 'o', 'Ġ', 'w', 'r', 'd', '!']) vocab[c] = Object.keys(vocab).length;
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'Ġw o', 'r l', 'Ġwo rl', 'Ġworl d'];
  for (const m of merges) vocab[m.replace(' ', '')] = Object.keys(vocab).length;
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<|endoftext|>')],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

async function configErrorOf(promise: Promise<unknown>): Promise<ConfigError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadTokenizer', () => {
  it('round-trips a word-level tokenizer, mapping unknown words to the unknown token from tokenizer_config.json', async () => {
    const tokenizer = await loadTokenizer(await folder({ 'tokenizer.json': WORD_LEVEL, 'tokenizer_config.json': { unk_token: '<unk>' } }));
    expect(tokenizer).toBeDefined();
    expect(tokenizer!.encode('hello the world')).toEqual([1, 3, 2]);
    expect(tokenizer!.encode('  copy   hello ')).toEqual([4, 1]);
    expect(tokenizer!.decode([1, 3, 2])).toBe('hello the world');
    expect(tokenizer!.decode(Int32Array.of(4, 4))).toBe('copy copy');
    expect(tokenizer!.encode('hello stranger')).toEqual([1, 0]);
    expect(tokenizer!.decode([])).toBe('');
  });

  it('names the file when a word has no id and there is no unknown token', async () => {
    const dir = await folder({ 'tokenizer.json': WORD_LEVEL });
    const tokenizer = (await loadTokenizer(dir))!;
    expect(tokenizer.encode('the world')).toEqual([3, 2]);
    let caught: unknown;
    try {
      tokenizer.encode('the stranger');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe('unknown-token');
    expect((caught as ConfigError).message).toContain(join(dir, 'tokenizer.json'));
    expect((caught as ConfigError).message).toContain('"stranger"');
  });

  it('round-trips a byte-level BPE and keeps or skips special tokens', async () => {
    const tokenizer = (await loadTokenizer(await folder({ 'tokenizer.json': byteLevelBpe() })))!;
    const ids = tokenizer.encode('hello world!');
    expect(ids).toEqual([13, 18, 9]); // "hello", "Ġworld", "!" after the merges
    expect(tokenizer.decode(ids)).toBe('hello world!');
    const withSpecial = tokenizer.encode('hello<|endoftext|> world');
    expect(withSpecial).toEqual([13, 0, 18]);
    expect(tokenizer.decode(withSpecial)).toBe('hello<|endoftext|> world');
    expect(tokenizer.decode(withSpecial, { skipSpecialTokens: true })).toBe('hello world');
  });

  it('returns undefined for a folder without tokenizer.json', async () => {
    expect(await loadTokenizer(await folder({ 'tokenizer_config.json': { unk_token: '<unk>' } }))).toBeUndefined();
  });

  it('rejects a corrupt or unusable file with a ConfigError naming it', async () => {
    const corrupt = await folder({ 'tokenizer.json': '{"model": {"type": "WordLe' });
    const notJson = await configErrorOf(loadTokenizer(corrupt));
    expect(notJson.code).toBe('bad-tokenizer-json');
    expect(notJson.message).toContain(join(corrupt, 'tokenizer.json'));

    const array = await configErrorOf(loadTokenizer(await folder({ 'tokenizer.json': [1, 2] })));
    expect(array.code).toBe('bad-tokenizer-json');

    const empty = await folder({ 'tokenizer.json': {} });
    const unusable = await configErrorOf(loadTokenizer(empty));
    expect(unusable.code).toBe('bad-tokenizer');
    expect(unusable.message).toContain(join(empty, 'tokenizer.json'));

    const badConfig = await folder({ 'tokenizer.json': WORD_LEVEL, 'tokenizer_config.json': 'not json' });
    const config = await configErrorOf(loadTokenizer(badConfig));
    expect(config.code).toBe('bad-tokenizer-json');
    expect(config.message).toContain(join(badConfig, 'tokenizer_config.json'));
  });

  it('reports an unreadable tokenizer.json (here a folder) as unreadable', async () => {
    const dir = await folder({});
    await mkdir(join(dir, 'tokenizer.json'));
    expect((await configErrorOf(loadTokenizer(dir))).code).toBe('unreadable');
  });
});

describe('loadCheckpoint and tokenizers', () => {
  it('carries the folder’s tokenizer when it has one, and none otherwise', async () => {
    const dir = await folder({});
    await makeTinyModel(dir, { seed: 3, hidden: 16, heads: 2, vocab: 8, layers: 1 });
    const bare = await loadCheckpoint(dir);
    await bare.weights.close();
    expect(bare.tokenizer).toBeUndefined();
    expect('tokenizer' in bare).toBe(false);
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(WORD_LEVEL));
    const checkpoint = await loadCheckpoint(dir);
    try {
      expect(checkpoint.tokenizer?.encode('copy the world')).toEqual([4, 3, 2]);
    } finally {
      await checkpoint.weights.close();
    }
  });
});
