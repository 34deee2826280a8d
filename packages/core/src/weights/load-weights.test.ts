import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../errors.js';
import { writeSafetensors } from './safetensors-writer.js';
import { loadWeights } from './load-weights.js';

let root: string;
let counter = 0;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ropeswitch-store-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const values = (n: number, start: number) => new Float32Array(n).map((_, i) => start + i);

/** A fresh checkpoint directory with two shards: a + b in shard 1, c in shard 2. */
async function shardedDir(weightMap?: unknown): Promise<string> {
  const dir = join(root, `ckpt-${counter++}`);
  await mkdir(dir);
  await writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [
    { name: 'b', dtype: 'F32', shape: [2], data: values(2, 10) },
    { name: 'a', dtype: 'BF16', shape: [2, 2], data: values(4, 0) },
  ]);
  await writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [{ name: 'c', dtype: 'F16', shape: [3], data: values(3, 20) }]);
  const map = weightMap ?? { a: 'model-00001-of-00002.safetensors', b: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' };
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 28 }, weight_map: map }));
  return dir;
}

describe('loadWeights', () => {
  it('opens a single-file checkpoint', async () => {
    const dir = join(root, 'single');
    await mkdir(dir);
    await writeSafetensors(join(dir, 'model.safetensors'), [{ name: 'x', dtype: 'F32', shape: [3], data: values(3, 1) }]);
    const store = await loadWeights(dir);
    expect(store.names).toEqual(['x']);
    expect(store.get('x', [3])).toEqual(values(3, 1));
    await store.close();
  });

  it('opens a sharded checkpoint through its index', async () => {
    const store = await loadWeights(await shardedDir());
    expect(store.names).toEqual(['b', 'a', 'c']); // shard order, then data order within each shard
    expect(store.has('c')).toBe(true);
    expect(store.info('a')).toEqual({ name: 'a', dtype: 'BF16', shape: [2, 2] });
    expect(store.get('a', [2, 2])).toEqual(values(4, 0));
    expect(store.get('b')).toEqual(values(2, 10));
    expect(store.get('c', [3])).toEqual(values(3, 20));
    expect(() => store.get('c', [1, 3])).toThrow(expect.objectContaining({ code: 'shape-mismatch', tensor: 'c' }));
    expect(() => store.info('zz')).toThrow(expect.objectContaining({ code: 'missing-tensor' }));
    await store.close();
    expect(() => store.get('a')).toThrow(expect.objectContaining({ code: 'closed' }));
  });

  it('empty directory → no-weights', async () => {
    const dir = join(root, 'empty');
    await mkdir(dir);
    await expect(loadWeights(dir)).rejects.toThrow(WeightsError);
    await expect(loadWeights(dir)).rejects.toMatchObject({ code: 'no-weights' });
  });

  it('a tensor missing from its shard → missing-tensor', async () => {
    const dir = await shardedDir({ a: 'model-00001-of-00002.safetensors', c: 'model-00001-of-00002.safetensors' });
    await expect(loadWeights(dir)).rejects.toThrow(WeightsError);
    await expect(loadWeights(dir)).rejects.toMatchObject({ code: 'missing-tensor', tensor: 'c' });
  });

  it('shard paths outside the directory and malformed indexes → bad-index', async () => {
    const bad: unknown[] = [{ a: '../x' }, { a: 'sub/x.safetensors' }, { a: '..' }, { a: 3 }, ['a'], 'weights'];
    for (const weightMap of bad) {
      const dir = await shardedDir(weightMap);
      await expect(loadWeights(dir)).rejects.toThrow(WeightsError);
      await expect(loadWeights(dir)).rejects.toMatchObject({ code: 'bad-index' });
    }
    const dir = await shardedDir();
    await writeFile(join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expect(loadWeights(dir)).rejects.toMatchObject({ code: 'bad-index' });
  });

  it('a listed shard that does not exist → missing-file', async () => {
    const dir = await shardedDir({ a: 'model-00003-of-00002.safetensors' });
    await expect(loadWeights(dir)).rejects.toMatchObject({ code: 'missing-file' });
  });
});

describe('loadWeights progress and half-precision pieces', () => {
  it('reports every byte read across shards, ending at the checkpoint total', async () => {
    const dir = await shardedDir();
    const seen: { bytesRead: number; totalBytes: number; tensor: string }[] = [];
    const store = await loadWeights(dir, { onProgress: (p) => seen.push(p) });
    for (const name of store.names) store.get(name);
    await store.close();
    // a: 4 BF16 (8 bytes), b: 2 F32 (8), c: 3 F16 (6).
    expect(seen.map((p) => p.totalBytes)).toEqual(seen.map(() => 22));
    expect(seen.map((p) => p.tensor).sort()).toEqual(['a', 'b', 'c']);
    expect(seen.at(-1)!.bytesRead).toBe(22);
    expect(seen.every((p, i) => i === 0 || p.bytesRead > seen[i - 1]!.bytesRead)).toBe(true);
  });

  it('widens a BF16 tensor larger than one read piece (8 MiB) exactly, piece by piece', async () => {
    const dir = join(root, 'big-bf16');
    await mkdir(dir);
    const n = 5 * 1024 * 1024 + 3; // 10 MiB of BF16: two pieces and an odd tail
    const data = new Float32Array(n).map((_, i) => (i % 509) - 254); // integers of magnitude ≤ 256: exact in bf16
    await writeSafetensors(join(dir, 'model.safetensors'), [{ name: 'w', dtype: 'BF16', shape: [n], data }]);
    const pieces: number[] = [];
    let last = 0;
    const store = await loadWeights(dir, {
      onProgress: (p) => {
        pieces.push(p.bytesRead - last);
        last = p.bytesRead;
      },
    });
    const got = store.get('w');
    await store.close();
    // Element by element in a loop: toEqual over millions of elements takes minutes.
    let mismatches = 0;
    for (let i = 0; i < n; i++) if (got[i] !== data[i]) mismatches++;
    expect(got.length).toBe(n);
    expect(mismatches).toBe(0);
    expect(pieces).toEqual([8 * 1024 * 1024, 2 * n - 8 * 1024 * 1024]);
  });
});
