import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as browser from './browser.js';
import * as main from './index.js';

/** What the main entry has and the browser entry leaves out: each reads or writes files. */
const FILE_SYSTEM_ONLY = ['INDEX_FILE_NAME', 'SINGLE_FILE_NAME', 'loadCheckpoint', 'loadModelConfig', 'loadTokenizer', 'loadWeights', 'openSafetensors', 'encodeSafetensors', 'writeSafetensors', 'writeCheckpoint', 'openFileSink'];

/**
 * The modules `entry` loads at run time (type-only imports and exports are erased), following
 * relative specifiers; returns every non-relative specifier met (`node:fs`, packages).
 */
function runtimeImports(entry: string): { modules: Set<string>; external: Set<string> } {
  const modules = new Set<string>();
  const external = new Set<string>();
  const visit = (file: string): void => {
    if (modules.has(file)) return;
    modules.add(file);
    const source = readFileSync(file, 'utf8');
    for (const m of source.matchAll(/^\s*(import|export)\s+(type\s+)?[^'";]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm)) {
      if (m[2] !== undefined) continue; // `import type` / `export type`
      const specifier = (m[3] ?? m[4])!;
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else external.add(specifier);
    }
  };
  visit(entry);
  return { modules, external };
}

describe('the browser entry of @ropeswitch/core', () => {
  it('exports the main entry\'s values, the very same objects, less only the file-system ones, plus openSafetensorsBytes', () => {
    const mainNames = Object.keys(main).sort();
    const browserNames = Object.keys(browser).sort();
    expect(mainNames.filter((n) => !browserNames.includes(n)).sort()).toEqual([...FILE_SYSTEM_ONLY].sort());
    expect(browserNames.filter((n) => !mainNames.includes(n))).toEqual([]);
    expect(browserNames).toContain('openSafetensorsBytes');
    for (const name of browserNames) expect(browser[name as keyof typeof browser], name).toBe(main[name as keyof typeof main]);
  });

  it('loads no Node built-in and no package at run time, following every import from browser.ts', () => {
    const { modules, external } = runtimeImports(fileURLToPath(new URL('./browser.ts', import.meta.url)));
    expect([...external]).toEqual([]);
    expect(modules.size).toBeGreaterThan(30);
    const names = [...modules].map((f) => f.slice(f.indexOf('/src/') + 5));
    expect(names).toContain('weights/safetensors-header.ts');
    expect(names).not.toContain('weights/safetensors-reader.ts');
    // The walk does see Node imports where they are: the main entry reaches node:fs.
    expect([...runtimeImports(fileURLToPath(new URL('./index.ts', import.meta.url))).external]).toContain('node:fs');
  });
});
