import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, type ModelConfig } from '@ropeswitch/core';
import type { GenaiIoNames } from './genai-session.js';

/** The parts of onnxruntime-genai's `genai_config.json` (`model.decoder`) the backend reads. */
export interface GenaiDecoderConfig {
  /** The decoder's model file, relative to the folder (`decoder.filename`). */
  readonly fileName: string;
  readonly names: GenaiIoNames;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headSize: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
}

/**
 * Reads `<dir>/genai_config.json`.
 *
 * @throws ConfigError `unreadable` / `bad-json` / `missing-field` / `invalid-value` with the file and field named.
 */
export async function readGenaiConfig(dir: string): Promise<GenaiDecoderConfig> {
  const path = join(dir, 'genai_config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    const code = err instanceof SyntaxError ? 'bad-json' : 'unreadable';
    throw new ConfigError(code, `cannot read ${path} (the onnxruntime-genai model folder's config): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const model = field(json, 'model', path);
  const decoder = field(model, 'decoder', path, 'model');
  const inputs = field(decoder, 'inputs', path, 'model.decoder');
  const outputs = field(decoder, 'outputs', path, 'model.decoder');
  const str = (obj: unknown, key: string, at: string, fallback?: string): string => {
    const v = (obj as Record<string, unknown>)[key];
    if (typeof v === 'string' && v !== '') return v;
    if (v === undefined && fallback !== undefined) return fallback;
    throw new ConfigError(v === undefined ? 'missing-field' : 'invalid-value', `${path}: ${at}.${key} must be a non-empty string`, { field: `${at}.${key}` });
  };
  const int = (obj: unknown, key: string, at: string): number => {
    const v = (obj as Record<string, unknown>)[key];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
    throw new ConfigError(v === undefined ? 'missing-field' : 'invalid-value', `${path}: ${at}.${key} must be a positive integer`, { field: `${at}.${key}` });
  };
  const fileName = str(decoder, 'filename', 'model.decoder');
  if (fileName.includes('/') || fileName.includes('\\') || fileName.startsWith('.')) {
    throw new ConfigError('invalid-value', `${path}: model.decoder.filename '${fileName}' must be a file name in the model folder`, { field: 'model.decoder.filename' });
  }
  const template = (obj: unknown, key: string, at: string, fallback: string): string => {
    const v = str(obj, key, at, fallback);
    if (!v.includes('%d')) throw new ConfigError('invalid-value', `${path}: ${at}.${key} '${v}' needs a %d for the layer index`, { field: `${at}.${key}` });
    return v;
  };
  return {
    fileName,
    names: {
      inputIds: str(inputs, 'input_ids', 'model.decoder.inputs', 'input_ids'),
      attentionMask: str(inputs, 'attention_mask', 'model.decoder.inputs', 'attention_mask'),
      pastKey: template(inputs, 'past_key_names', 'model.decoder.inputs', 'past_key_values.%d.key'),
      pastValue: template(inputs, 'past_value_names', 'model.decoder.inputs', 'past_key_values.%d.value'),
      logits: str(outputs, 'logits', 'model.decoder.outputs', 'logits'),
      presentKey: template(outputs, 'present_key_names', 'model.decoder.outputs', 'present.%d.key'),
      presentValue: template(outputs, 'present_value_names', 'model.decoder.outputs', 'present.%d.value'),
    },
    numLayers: int(decoder, 'num_hidden_layers', 'model.decoder'),
    numHeads: int(decoder, 'num_attention_heads', 'model.decoder'),
    numKvHeads: int(decoder, 'num_key_value_heads', 'model.decoder'),
    headSize: int(decoder, 'head_size', 'model.decoder'),
    hiddenSize: int(decoder, 'hidden_size', 'model.decoder'),
    vocabSize: int(model, 'vocab_size', 'model'),
  };
}

/** Checks that the HF config describes the same decoder as `genai_config.json` (a wrong `config.json` would give wrong rope factors silently). */
export function checkGenaiAgainstHf(genai: GenaiDecoderConfig, hf: ModelConfig, genaiPath: string): void {
  const pairs: [string, number, number][] = [
    ['num_hidden_layers', genai.numLayers, hf.numLayers],
    ['num_attention_heads', genai.numHeads, hf.numHeads],
    ['num_key_value_heads', genai.numKvHeads, hf.numKvHeads],
    ['head_size', genai.headSize, hf.headDim],
    ['hidden_size', genai.hiddenSize, hf.hiddenSize],
    ['vocab_size', genai.vocabSize, hf.vocabSize],
  ];
  for (const [name, a, b] of pairs) {
    if (a !== b) {
      throw new ConfigError('config-mismatch', `${genaiPath} says ${name} = ${a} but the HF config.json says ${b}: pass the config.json of the model this ONNX export was built from`, { field: name });
    }
  }
}

function field(obj: unknown, key: string, path: string, at?: string): unknown {
  const v = typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
  const name = at ? `${at}.${key}` : key;
  if (typeof v !== 'object' || v === null) throw new ConfigError('missing-field', `${path}: ${name} must be an object`, { field: name });
  return v;
}
