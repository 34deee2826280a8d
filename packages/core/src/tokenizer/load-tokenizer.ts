import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError } from '../errors.js';
import type { TextTokenizer } from './text-tokenizer.js';

/**
 * Loads `<dir>/tokenizer.json` (with `<dir>/tokenizer_config.json` when present, which supplies
 * e.g. the unknown token of word-level models). Runs offline: nothing is fetched.
 *
 * @returns `undefined` when the folder has no `tokenizer.json`.
 * @throws ConfigError `unreadable` (a file exists but cannot be read), `bad-tokenizer-json` (not
 *   a JSON object), or `bad-tokenizer` (a tokenizer the library cannot build); the message names the file.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer | undefined> {
  const path = join(dir, 'tokenizer.json');
  const tokenizerJson = await readJsonObject(path);
  if (tokenizerJson === undefined) return undefined;
  const configPath = join(dir, 'tokenizer_config.json');
  const config = (await readJsonObject(configPath)) ?? {};
  let tokenizer: HfTokenizer;
  try {
    tokenizer = new Tokenizer(tokenizerJson, config);
  } catch (err) {
    throw new ConfigError('bad-tokenizer', `cannot build a tokenizer from ${path}: ${describe(err)}`, { cause: err });
  }
  return new HfTextTokenizer(tokenizer, path);
}

/**
 * The part of `@huggingface/tokenizers`' `Tokenizer` used here, typed by hand: the package's own
 * declarations use extensionless imports that do not resolve under NodeNext, so they read as `any`.
 */
interface HfTokenizer {
  /** `ids[i]` is `undefined` for a piece outside the vocabulary when there is no unknown token. */
  encode(text: string): { readonly ids: readonly (number | undefined)[]; readonly tokens: readonly string[] };
  decode(ids: number[], options: { skip_special_tokens: boolean }): string;
}

/** `@huggingface/tokenizers` behind {@link TextTokenizer}. */
class HfTextTokenizer implements TextTokenizer {
  constructor(
    private readonly tokenizer: HfTokenizer,
    private readonly path: string,
  ) {}

  encode(text: string): number[] {
    const { ids, tokens } = this.tokenizer.encode(text);
    const out = new Array<number>(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === undefined || !Number.isInteger(id)) {
        throw new ConfigError(
          'unknown-token',
          `${this.path} has no id for ${JSON.stringify(tokens[i])} and no unknown token (set unk_token in tokenizer_config.json)`,
        );
      }
      out[i] = id;
    }
    return out;
  }

  decode(ids: ArrayLike<number>, options: { readonly skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return ''; // the library refuses an empty list
    return this.tokenizer.decode(Array.from(ids), { skip_special_tokens: options.skipSpecialTokens ?? false });
  }
}

/** The JSON object in `path`, or `undefined` when there is no such file. */
async function readJsonObject(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError('unreadable', `cannot read ${path}: ${describe(err)}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('bad-tokenizer-json', `${path} is not valid JSON: ${describe(err)}`, { cause: err });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('bad-tokenizer-json', `${path} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
