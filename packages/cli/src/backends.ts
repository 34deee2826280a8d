import { fileURLToPath } from 'node:url';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type Backend, loadCheckpoint } from '@ropeswitch/core';

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
  const checkpoint = await loadCheckpoint(modelDir);
  try {
    switch (name) {
      case 'reference':
        return new ReferenceBackend(checkpoint.config, checkpoint.weights);
    }
  } finally {
    await checkpoint.weights.close();
  }
}
