import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { ConfigError, type FileSink, SeededRandom, WeightsError, loadCheckpoint, noCacheForward, openFileSink } from '@ropeswitch/core';
import { afterAll, describe, expect, it } from 'vitest';
import { decoderTensors } from './decoder-tensors.js';
import { MODEL_LIKES, likeConfig, makeModel, publishedConfig } from './make-model.js';
import { fillFromTable, normalQuantile, quantileTable, standardNormalQuantile } from './quantile-tables.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-make-model-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A narrow Phi-3-mini-like model: the published config with fewer heads and a small vocab (head dim, rope factors, L and M unchanged). */
const NARROW = { hidden_size: 192, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 256, vocab_size: 512 };

describe('the published configs', () => {
  it('knows each --like name, and lists them for an unknown one', () => {
    for (const like of MODEL_LIKES) expect(publishedConfig(like)['model_type']).toBe('phi3');
    expect(() => publishedConfig('phi-5' as never)).toThrow(ConfigError);
    expect(() => publishedConfig('phi-5' as never)).toThrow(MODEL_LIKES.join(', '));
  });

  it('writes the published config with only num_hidden_layers and torch_dtype changed', () => {
    for (const like of MODEL_LIKES) {
      const published = publishedConfig(like);
      const written = likeConfig({ like, layers: 3, dtype: 'f16' });
      expect(written['num_hidden_layers']).toBe(3);
      expect(written['torch_dtype']).toBe('float16');
      const changed = Object.keys(published).filter((k) => JSON.stringify(published[k]) !== JSON.stringify(written[k]));
      expect(changed.sort()).toEqual(['num_hidden_layers', 'torch_dtype']);
      expect(Object.keys(written).sort()).toEqual(Object.keys(published).sort());
    }
  });
});

describe('quantile tables', () => {
  it('inverts the normal CDF to 1e-8', () => {
    expect(standardNormalQuantile(0.5)).toBeCloseTo(0, 12);
    expect(standardNormalQuantile(0.975)).toBeCloseTo(1.959963984540054, 8);
    expect(standardNormalQuantile(0.001)).toBeCloseTo(-3.090232306167813, 8);
    expect(standardNormalQuantile(1 - 1e-6)).toBeCloseTo(4.753424308822899, 7);
  });

  it('draws the same values however the stream is cut into even pieces', () => {
    const table = quantileTable(normalQuantile(1), 'BF16');
    const whole = new Uint16Array(1000);
    fillFromTable(whole, 1000, table, 42);
    const cut = new Uint16Array(1000);
    let state = 42;
    for (const [at, n] of [[0, 250], [250, 2], [252, 748]] as const) state = fillFromTable(cut.subarray(at), n, table, state);
    expect(cut).toEqual(whole);
  });
});

describe('makeModel', () => {
  it('writes at least two shards of seeded weights at the scale the docs state, the same bytes for the same seed', async () => {
    const [a, b, c] = [await tempDir(), await tempDir(), await tempDir()];
    const made = await makeModel(a, { like: 'phi-3-mini-128k', layers: 2, overrides: NARROW, seed: 5 });
    await makeModel(b, { like: 'phi-3-mini-128k', layers: 2, overrides: NARROW, seed: 5 });
    await makeModel(c, { like: 'phi-3-mini-128k', layers: 2, overrides: NARROW, seed: 6 });
    expect(made.checkpoint.shards.length).toBeGreaterThanOrEqual(2);
    const digest = async (dir: string) => {
      const h = createHash('sha256');
      for (const f of made.checkpoint.shards) h.update(await readFile(join(dir, f)));
      return h.digest('hex');
    };
    expect(await digest(b)).toBe(await digest(a));
    expect(await digest(c)).not.toBe(await digest(a));

    const { config, weights } = await loadCheckpoint(a);
    expect(config.numLayers).toBe(2);
    expect(weights.names.length).toBe(decoderTensors(config).length);
    const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    // Projections N(0, 1/fan_in), embedding and lm_head N(0, 4/hidden), norms U(0.8, 1.2).
    expect(std(weights.get('model.layers.1.mlp.down_proj.weight'))).toBeCloseTo(1 / Math.sqrt(256), 2);
    expect(std(weights.get('model.layers.0.self_attn.qkv_proj.weight')) * Math.sqrt(192)).toBeCloseTo(1, 1);
    expect(std(weights.get('lm_head.weight')) * Math.sqrt(192)).toBeCloseTo(2, 1);
    const norm = weights.get('model.norm.weight');
    expect(Math.min(...norm)).toBeGreaterThanOrEqual(0.79);
    expect(Math.max(...norm)).toBeLessThanOrEqual(1.21);
    await weights.close();
  });

  // The scaling keeps activations O(1) with depth and length: a 32-layer model over 1024 tokens and
  // a 2-layer one over 8192 (L = 4096, so both regimes), every logit finite, their spread ≈ 2 as designed.
  // (32 layers over 8192 tokens, measured once: max |logit| 9.7, RMS 1.96; 42 s, too slow for a test.)
  for (const [layers, tokens] of [[32, 1024], [2, 8192]] as const) {
    it(`keeps logits finite and O(1): ${layers} layers over ${tokens} tokens`, async () => {
      const dir = await tempDir();
      await makeModel(dir, { like: 'phi-3-mini-128k', layers, overrides: { ...NARROW, hidden_size: 96, num_attention_heads: 1, num_key_value_heads: 1, intermediate_size: 128 } });
      const { config, weights } = await loadCheckpoint(dir);
      const backend = new ReferenceBackend(config, weights);
      await weights.close();
      const rng = new SeededRandom(2);
      const logits = await noCacheForward(backend, Array.from({ length: tokens }, () => rng.int(config.vocabSize)), { last: tokens });
      await backend.dispose();
      let finite = 0;
      let squares = 0;
      for (const x of logits) {
        if (Number.isFinite(x)) finite++;
        squares += x * x;
      }
      expect(finite).toBe(logits.length);
      const rms = Math.sqrt(squares / logits.length);
      expect(rms).toBeGreaterThan(1);
      expect(rms).toBeLessThan(4);
    });
  }

  it('a full disk mid-write: disk-full, and nothing in the folder that a load would accept', async () => {
    const dir = await tempDir();
    let written = 0;
    const fullAfter = async (path: string): Promise<FileSink> => {
      const sink = await openFileSink(path);
      return {
        async write(bytes) {
          written += bytes.byteLength;
          if (written > 300_000) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
          await sink.write(bytes);
        },
        close: () => sink.close(),
      };
    };
    const error = await makeModel(dir, { like: 'phi-4-mini', layers: 1, overrides: { ...NARROW, hidden_size: 256, num_key_value_heads: 1 }, openSink: fullAfter }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WeightsError);
    expect((error as WeightsError).code).toBe('disk-full');
    expect(await readdir(dir)).toEqual([]);
    await expect(loadCheckpoint(dir)).rejects.toThrow();
  });
});
