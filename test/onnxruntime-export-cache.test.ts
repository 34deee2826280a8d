/**
 * Exports at scale: the exporter streams (each weight is written to the external-data file before
 * the next layer is read), reports progress, keys its cache by the checkpoint's files when it knows
 * them (a reopen reads no weight byte), and rebuilds an entry that does not match its manifest
 * instead of loading it.
 */
import { cpSync, openSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { DATA_FILE, type ExportProgress, MANIFEST_FILE, MODEL_FILE, OnnxRuntimeBackend, buildDecoderModel } from '@ropeswitch/backend-onnxruntime';
import { type WeightStore, loadCheckpoint, noCacheForward } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { hfDir, maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

const tempDir = scratchDirs('ropeswitch-ort-cache-');

/** A private copy of a fixture checkpoint (its files' times can be changed). */
function checkpointCopy(name: string): string {
  const dir = join(tempDir(), name);
  cpSync(`${hfDir}${name}`, dir, { recursive: true });
  return dir;
}

/** `store`, failing on every tensor read. */
function unreadable(store: WeightStore): WeightStore {
  return { ...store, names: store.names, has: (n) => store.has(n), info: (n) => store.info(n), get: (n) => { throw new Error(`read ${n}`); }, close: () => store.close() };
}

describe('onnxruntime export: streaming', () => {
  it('writes each layer’s weights before it reads the next layer', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`);
    const events: string[] = [];
    buildDecoderModel(
      config,
      { get: (name, shape) => (events.push(`read ${name}`), weights.get(name, shape)) },
      { sink: (t) => (events.push(`write ${t.name}`), t) },
    );
    await weights.close();
    const firstRead = (l: number) => events.findIndex((e) => e.startsWith(`read model.layers.${l}.`));
    const lastWrite = (l: number) => events.reduce((last, e, i) => (e.startsWith(`write model.layers.${l}.`) ? i : last), -1);
    for (let l = 0; l + 1 < config.numLayers; l++) expect(lastWrite(l)).toBeLessThan(firstRead(l + 1));
    // One weight written per tensor read (fused Phi-3 projections, untied LM head): the graph keeps no tensor the sink did not see.
    expect(events.filter((e) => e.startsWith('write ')).length).toBe(events.filter((e) => e.startsWith('read ')).length);
  });
});

describe('onnxruntime export cache keyed by the checkpoint files', () => {
  it('a reopen reads no weight byte; changed files or other options make a new export', async () => {
    const dir = checkpointCopy('seed2-mha');
    const cacheDir = tempDir();
    const { config, weights } = await loadCheckpoint(dir);
    const progress: ExportProgress[] = [];
    const first = await OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: dir, onProgress: (p) => progress.push(p) });
    expect(first.exported).toMatchObject({ created: true, manifest: { keyedBy: 'files' } });
    const exportEvents = progress.filter((p) => p.phase === 'export');
    expect(exportEvents.length).toBeGreaterThan(5);
    expect(exportEvents.at(-1)!.bytesDone).toBe(exportEvents.at(-1)!.totalBytes);
    expect(exportEvents.every((p, i) => i === 0 || p.bytesDone > exportEvents[i - 1]!.bytesDone)).toBe(true);
    expect(progress.map((p) => p.phase).filter((p) => p !== 'export')).toEqual(['load']);

    progress.length = 0;
    const again = await OnnxRuntimeBackend.open(config, unreadable(weights), { cacheDir, checkpointDir: dir, onProgress: (p) => progress.push(p) });
    expect(again.exported).toMatchObject({ created: false, dir: first.exported.dir });
    expect(progress.map((p) => p.phase)).toEqual(['verify', 'load']);
    const ids = [1, 5, 9, 13];
    expect(maxAbsDiff(await noCacheForward(again, ids), await noCacheForward(first, ids))).toBe(0);
    await Promise.all([first.dispose(), again.dispose()]);

    // The same folder with a touched weights file: the key changes, so does the export.
    const shard = join(dir, 'model.safetensors');
    const t = statSync(shard).mtime;
    utimesSync(shard, t, new Date(t.getTime() + 5000));
    const touched = await OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: dir });
    expect(touched.exported.created).toBe(true);
    expect(touched.exported.dir).not.toBe(first.exported.dir);
    expect(touched.exported.manifest.contentDigest).toBe(first.exported.manifest.contentDigest);
    await touched.dispose();
    await expect(OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: tempDir() })).rejects.toMatchObject({ name: 'BackendError', code: 'bad-option' });
    await weights.close();
  });

  it('without a checkpoint folder the key hashes every tensor (a digest pass before the export)', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`);
    const phases = new Set<string>();
    const backend = await OnnxRuntimeBackend.open(config, weights, { cacheDir: tempDir(), onProgress: (p) => phases.add(p.phase) });
    expect([...phases]).toEqual(['digest', 'export', 'load']);
    expect(backend.exported.manifest.keyedBy).toBe('content');
    await Promise.all([backend.dispose(), weights.close()]);
  });
});

describe('onnxruntime export cache: damaged entries are rebuilt, never loaded', () => {
  const damage: [string, (dir: string) => void, RegExp][] = [
    ['a truncated data file', (d) => truncateSync(join(d, DATA_FILE), statSync(join(d, DATA_FILE)).size - 100), /has \d+ bytes, the manifest says/],
    ['overwritten data bytes', (d) => overwrite(join(d, DATA_FILE), 0), /sampled pieces/],
    ['a changed graph', (d) => overwrite(join(d, MODEL_FILE), 10), /does not match its hash/],
    ['an unreadable manifest', (d) => writeFileSync(join(d, MANIFEST_FILE), '{ not json'), /export\.json is missing or unreadable/],
    ['a missing manifest', (d) => rmSync(join(d, MANIFEST_FILE)), /export\.json is missing or unreadable/],
  ];

  for (const [what, spoil, reason] of damage) {
    it(`${what}`, async () => {
      const dir = checkpointCopy('seed1-gqa');
      const cacheDir = tempDir();
      const { config, weights } = await loadCheckpoint(dir);
      const good = await OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: dir });
      const ids = [2, 4, 6, 8, 10];
      const expected = await noCacheForward(good, ids);
      await good.dispose();
      spoil(good.exported.dir);
      const rebuilt = await OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: dir });
      expect(rebuilt.exported.created).toBe(true);
      expect(rebuilt.exported.rebuiltBecause).toMatch(reason);
      expect(rebuilt.exported.dir).toBe(good.exported.dir);
      expect(maxAbsDiff(await noCacheForward(rebuilt, ids), expected)).toBe(0);
      await Promise.all([rebuilt.dispose(), weights.close()]);
    });
  }
});

/** Flips 16 bytes of `path` at `at`. */
function overwrite(path: string, at: number): void {
  const bytes = readFileSync(path).subarray(at, at + 16).map((b) => b ^ 0xff);
  const fd = openSync(path, 'r+');
  writeSync(fd, bytes, 0, bytes.length, at);
  closeSync(fd);
}
