import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fixturesDir, hfCases, hfDir, trainedDir } from './support/fixtures.js';

// test/fixtures/ is the repo's copy of ../shared/fixtures/ (HF reference outputs and the trained
// copy-task model), and packages/cli/assets/copy-longrope/ the CLI's copy of the trained model.
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const sharedFixtures = resolve(repoRoot, '../shared/fixtures');
const cliModelDir = join(repoRoot, 'packages', 'cli', 'assets', 'copy-longrope');

/** Every file under `dir`, as sorted relative paths with `/` separators. */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else out.push(relative(dir, path).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Asserts two folders hold the same files with the same bytes. */
function expectSameTree(actualDir: string, expectedDir: string): void {
  const files = listFiles(expectedDir);
  expect(files.length).toBeGreaterThan(0);
  expect(listFiles(actualDir)).toEqual(files);
  for (const file of files) expect(sha256(join(actualDir, file)), file).toBe(sha256(join(expectedDir, file)));
}

const TRAINED_FILES = ['README.md', 'config.json', 'eval.json', 'eval_rerotate.json', 'model.safetensors', 'tokens.json'];

describe('fixture copies', () => {
  it('test/fixtures is byte-identical to ../shared/fixtures (or, without it, complete)', () => {
    if (existsSync(sharedFixtures)) {
      expectSameTree(fixturesDir, sharedFixtures);
    } else {
      // A clone without the shared folder: nothing to compare with, but every case must be whole.
      const cases = hfCases();
      expect(cases.length).toBeGreaterThan(0);
      for (const name of cases) {
        const files = listFiles(join(hfDir, name));
        for (const file of ['config.json', 'model.safetensors', 'expected.json']) expect(files, name).toContain(file);
      }
      expect(listFiles(trainedDir)).toEqual(TRAINED_FILES);
    }
  });

  it('the CLI ships the trained model byte for byte', () => {
    expect(listFiles(cliModelDir)).toEqual(TRAINED_FILES);
    expectSameTree(cliModelDir, trainedDir);
  });
});
