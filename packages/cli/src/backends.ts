import { fileURLToPath } from 'node:url';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type Backend, type TextTokenizer, loadCheckpoint } from '@ropeswitch/core';

/** Backends the command line can open, by `--backend` name. */
export const BACKEND_NAMES = ['reference'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** The trained copy-task model shipped with the CLI (see assets/copy-longrope/README.md). */
export const BUILTIN_MODEL_DIR = fileURLToPath(new URL('../assets/copy-longrope/', import.meta.url));

/** `--model builtin` names the shipped model; anything else is a folder. */
export function resolveModelDir(model: string): string {
  return model === 'builtin' ? BUILTIN_MODEL_DIR : model;
}

/** Loads the model folder into the named backend. */
export async function openBackend(name: BackendName, modelDir: string): Promise<Backend> {
  return (await openModel(name, modelDir)).backend;
}

/** A model folder opened for the command line: its backend and, when the folder has one, its tokenizer. */
export interface OpenModel {
  readonly backend: Backend;
  readonly tokenizer?: TextTokenizer;
}

/** Loads the model folder into the named backend, with its tokenizer when it has a `tokenizer.json`. */
export async function openModel(name: BackendName, modelDir: string): Promise<OpenModel> {
  const checkpoint = await loadCheckpoint(modelDir);
  try {
    switch (name) {
      case 'reference': {
        const backend = new ReferenceBackend(checkpoint.config, checkpoint.weights);
        return checkpoint.tokenizer ? { backend, tokenizer: checkpoint.tokenizer } : { backend };
      }
    }
  } finally {
    await checkpoint.weights.close();
  }
}
