import { fileURLToPath } from 'node:url';

/**
 * A file or folder under the CLI package's `assets/`. Resolved from this module, which sits one
 * level below the package root both as source (`src/`) and bundled (`dist/`).
 */
export function assetPath(relative: string): string {
  return fileURLToPath(new URL(`../assets/${relative}`, import.meta.url));
}
