/** Reads a model directory's `config.json` from disk (Node only; parsing itself is platform-neutral). */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';
import type { ModelConfig } from './model-config.js';
import { parseModelConfig } from './parse-config.js';

/**
 * Loads and validates `<dir>/config.json`.
 *
 * @throws ConfigError `unreadable` when the file cannot be read (the path is in the message),
 *   or any {@link parseModelConfig} error, with the path as the source.
 */
export async function loadModelConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new ConfigError('unreadable', `cannot read model config ${path}: ${why}`, { cause: err });
  }
  return parseModelConfig(text, path);
}
