import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../errors.js';
import { SeededRandom } from '../random/seeded-random.js';
import { decodeTensor, encodeTensor, type TensorDtype } from '../weights/dtype.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME, loadWeights } from '../weights/load-weights.js';
import { writeSafetensors } from '../weights/safetensors-writer.js';
import { type FileSink, openFileSink } from './file-sink.js';
import { type CheckpointTensor, planShards, shardFileName, writeCheckpoint } from './write-checkpoint.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-write-checkpoint-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Tensors with seeded values, emitted in pieces of `piece` values, and their float32 values (already rounded to the dtype). */
function tensors(dtype: TensorDtype, piece = 7): { tensors: CheckpointTensor[]; values: Map<string, Float32Array> } {
  const rng = new SeededRandom(3);
  const shapes: [string, number[]][] = [
    ['model.embed_tokens.weight', [16, 8]],
    ['model.layers.0.mlp.down_proj.weight', [8, 12]],
    ['model.norm.weight', [8]],
    ['lm_head.weight', [16, 8]],
  ];
  const values = new Map<string, Float32Array>();
  const out = shapes.map(([name, shape]): CheckpointTensor => {
    const data = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal(1));
    const bytes = encodeTensor(data, dtype);
    const per = bytes.byteLength / data.length;
    values.set(name, data);
    return {
      name,
      dtype,
      shape,
      *pieces() {
        for (let at = 0; at < data.length; at += piece) yield bytes.subarray(at * per, Math.min(data.length, at + piece) * per);
      },
    };
  });
  return { tensors: out, values };
}

const config = { model_type: 'phi3', note: 'written by the test' };

describe('planShards', () => {
  const specs = [40, 30, 20, 10].map((n, i) => ({ name: `t${i}`, dtype: 'F32' as const, shape: [n] }));

  it('fills shards in order up to the limit, HF style, and never splits a tensor', () => {
    expect(planShards(specs, 200).map((s) => s.map((t) => t.name))).toEqual([['t0'], ['t1', 't2'], ['t3']]);
    expect(planShards(specs, 1e9).length).toBe(1);
  });

  it('lowers the limit to reach minShards, but not below the largest tensor', () => {
    // 400 bytes in all: a limit of 200, the largest tensor 160.
    const two = planShards(specs, 1e9, 2);
    expect(two.length).toBeGreaterThanOrEqual(2);
    for (const shard of two) expect(shard.reduce((n, t) => n + 4 * t.shape[0]!, 0)).toBeLessThanOrEqual(200);
    expect(planShards([specs[0]!, specs[3]!], 1e9, 2).map((s) => s.map((t) => t.name))).toEqual([['t0'], ['t3']]);
    // Larger than the limit already: HF's own cut (5 GB + the rest for Phi-3-mini), not halves.
    expect(planShards(specs, 250, 2).map((s) => s.map((t) => t.name))).toEqual([['t0'], ['t1', 't2', 't3']]);
    // The limit stops at the largest tensor (160 bytes), so 80 + 40 still share a shard.
    expect(planShards(specs, 1e9, 10).map((s) => s.map((t) => t.name))).toEqual([['t0'], ['t1'], ['t2', 't3']]);
  });

  it('names shards as save_pretrained does', () => {
    expect(shardFileName(0, 2)).toBe('model-00001-of-00002.safetensors');
    expect(shardFileName(11, 12)).toBe('model-00012-of-00012.safetensors');
  });
});

describe('writeCheckpoint', () => {
  for (const dtype of ['BF16', 'F32'] as const) {
    it(`writes ${dtype} shards, the index and config.json, which loadWeights reads back value for value`, async () => {
      const dir = await tempDir();
      const { tensors: ts, values } = tensors(dtype);
      const progress: number[] = [];
      const written = await writeCheckpoint(dir, ts, { config, minShards: 2, onProgress: (p) => progress.push(p.bytesWritten / p.totalBytes) });
      expect(written.shards.length).toBeGreaterThanOrEqual(2);
      expect((await readdir(dir)).sort()).toEqual(['config.json', INDEX_FILE_NAME, ...written.shards].sort());
      const index = JSON.parse(await readFile(join(dir, INDEX_FILE_NAME), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
      expect(index.metadata.total_size).toBe(written.totalBytes);
      expect(Object.keys(index.weight_map)).toEqual([...values.keys()].sort());
      expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))).toEqual(config);
      const store = await loadWeights(dir);
      for (const [name, data] of values) {
        expect(store.get(name), name).toEqual(decodeTensor(encodeTensor(data, dtype), dtype));
      }
      await store.close();
      expect(progress.every((f, i) => i === 0 || f >= progress[i - 1]!)).toBe(true);
      expect(progress.at(-1)).toBe(1);
    });
  }

  it('writes one model.safetensors, without an index, when one shard holds everything', async () => {
    const dir = await tempDir();
    const written = await writeCheckpoint(dir, tensors('F32').tensors, { config });
    expect(written.shards).toEqual([SINGLE_FILE_NAME]);
    expect((await readdir(dir)).sort()).toEqual(['config.json', SINGLE_FILE_NAME]);
  });

  it('replaces an old model in the folder: its single file no longer shadows the new shards', async () => {
    const dir = await tempDir();
    await writeSafetensors(join(dir, SINGLE_FILE_NAME), [{ name: 'old', dtype: 'F32', shape: [1], data: new Float32Array([1]) }]);
    await writeFile(join(dir, 'model-00001-of-00009.safetensors'), 'stale shard');
    await writeCheckpoint(dir, tensors('F32').tensors, { config, minShards: 2 });
    const store = await loadWeights(dir);
    expect(store.has('old')).toBe(false);
    expect(store.has('lm_head.weight')).toBe(true);
    await store.close();
    expect(await readdir(dir)).not.toContain('model-00001-of-00009.safetensors');
  });

  /** A sink that fails like a full disk once `limit` bytes have gone through all sinks together. */
  function fullDiskAfter(limit: number): (path: string) => Promise<FileSink> {
    let total = 0;
    return async (path) => {
      const sink = await openFileSink(path);
      return {
        async write(bytes) {
          if (total + bytes.byteLength > limit) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          total += bytes.byteLength;
          await sink.write(bytes);
        },
        close: () => sink.close(),
      };
    };
  }

  it('a full disk mid-shard: one-line disk-full error, no shard, index or temporary file left, the old model still loads', async () => {
    const dir = await tempDir();
    await writeSafetensors(join(dir, SINGLE_FILE_NAME), [{ name: 'old', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const error = await writeCheckpoint(dir, tensors('BF16').tensors, { config, minShards: 2, openSink: fullDiskAfter(700) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WeightsError);
    expect((error as WeightsError).code).toBe('disk-full');
    expect((error as WeightsError).message).not.toContain('\n');
    expect((error as WeightsError).message).toMatch(/model-0000\d-of-0000\d\.safetensors: cannot write: the disk is full/);
    expect(await readdir(dir)).toEqual([SINGLE_FILE_NAME]);
    const store = await loadWeights(dir);
    expect(store.get('old')).toEqual(new Float32Array([1, 2]));
    await store.close();
  });

  it('a folder that cannot be created: not-writable, naming it', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'a-file'), 'x');
    const out = join(dir, 'a-file', 'model');
    await expect(writeCheckpoint(out, tensors('F32').tensors, { config })).rejects.toMatchObject({ code: 'not-writable', message: expect.stringContaining(out) });
  });

  it('a tensor that emits the wrong number of bytes fails with size-mismatch and leaves nothing', async () => {
    const dir = await tempDir();
    const ts = tensors('F32').tensors;
    const short: CheckpointTensor = { ...ts[1]!, pieces: () => [new Uint8Array(8)] };
    const long: CheckpointTensor = { ...ts[1]!, pieces: () => [new Uint8Array(8 * 12 * 4 + 4)] };
    for (const bad of [short, long]) {
      await expect(writeCheckpoint(dir, [ts[0]!, bad, ts[2]!], { config, minShards: 2 })).rejects.toMatchObject({ code: 'size-mismatch', tensor: bad.name });
      expect(await readdir(dir)).toEqual([]);
    }
  });
});
