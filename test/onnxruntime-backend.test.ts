import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DATA_FILE,
  DEFAULT_ROW_SLOTS,
  DecoderIo,
  MANIFEST_FILE,
  MODEL_FILE,
  OnnxRuntimeBackend,
  buildDecoderModel,
  cachedExport,
  contentDigest,
  exportKey,
  readValueInfo,
  tensorToArray,
} from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  BackendError,
  type CpuKvCache,
  type KvCache,
  type ModelConfig,
  type WeightStore,
  createRopeSchedule,
  loadCheckpoint,
  parseModelConfig,
} from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { hfDir, maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

const tempDir = scratchDirs('ropeswitch-ort-test-');

/** A fixture's config with some fields of config.json changed. */
function variantConfig(name: string, patch: Record<string, unknown>): ModelConfig {
  return parseModelConfig({ ...JSON.parse(readFileSync(`${hfDir}${name}/config.json`, 'utf8')), ...patch });
}

/** A store that also serves seeded bias vectors, so bias paths can be checked on bias-free fixtures. */
function withBiases(store: WeightStore, config: ModelConfig): WeightStore {
  const size = (name: string): number | undefined => {
    const qDim = config.numHeads * config.headDim;
    const kvDim = config.numKvHeads * config.headDim;
    if (name.endsWith('q_proj.bias')) return qDim;
    if (name.endsWith('k_proj.bias') || name.endsWith('v_proj.bias')) return kvDim;
    if (name.endsWith('gate_proj.bias') || name.endsWith('up_proj.bias')) return config.intermediateSize;
    if (name.endsWith('down_proj.bias')) return config.hiddenSize;
    return undefined;
  };
  return {
    names: store.names,
    has: (name) => store.has(name) || size(name) !== undefined,
    info: (name) => store.info(name),
    get: (name, shape) => {
      const n = size(name);
      if (store.has(name) || n === undefined) return store.get(name, shape);
      return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + name.length) * 0.3);
    },
    close: () => store.close(),
  };
}

/** Runs the same chunked prefill + two decode steps on both backends; returns every logit difference's max. */
async function compareWithReference(config: ModelConfig, store: WeightStore, options: { cacheDir: string; prefillChunk?: number }): Promise<number> {
  const mine = await OnnxRuntimeBackend.open(config, store, options);
  const ref = new ReferenceBackend(config, store);
  const schedule = createRopeSchedule(config.rope);
  const caches = [mine.createCache(), ref.createCache()] as const;
  let worst = 0;
  try {
    const prompt = Array.from({ length: 45 }, (_, i) => (i * 37 + 3) % config.vocabSize);
    const steps = [prompt, [5], [77 % config.vocabSize]];
    let at = 0;
    for (const tokens of steps) {
      const positions = tokens.map((_, i) => at + i);
      const regime = schedule.regimeFor(at + tokens.length);
      const [a, b] = await Promise.all([mine, ref].map((be, k) => be.forward({ rows: [{ tokens, positions, cache: caches[k]!, regime, logits: Math.min(2, tokens.length) }] })));
      worst = Math.max(worst, maxAbsDiff(a!.rows[0]!.data, b!.rows[0]!.data));
      at += tokens.length;
    }
    for (let l = 0; l < config.numLayers; l++) worst = Math.max(worst, maxAbsDiff(readCpuLayerKeys(caches[0], l), readCpuLayerKeys(caches[1], l)));
  } finally {
    caches.forEach((c) => c.dispose());
    await mine.dispose();
    await ref.dispose();
  }
  return worst;
}

describe('onnxruntime backend: exporter', () => {
  it('exports a graph whose cos/sin, row slots, caches and lengths are inputs and whose outputs are logits and the new rows only', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`);
    const { model, slots } = buildDecoderModel(config, weights);
    await weights.close();
    expect(slots).toBe(DEFAULT_ROW_SLOTS);
    const g = model.graph!;
    const inputs = g.input!.map((v) => readValueInfo(v));
    const half = config.rope.rotaryDim / 2;
    expect(inputs.slice(0, 6).map((v) => [v.name, v.dims])).toEqual([
      [DecoderIo.inputIds, ['tokens']],
      [DecoderIo.ropeCos, ['tokens', half]],
      [DecoderIo.ropeSin, ['tokens', half]],
      [DecoderIo.rowOffsets, [slots + 1]],
      [DecoderIo.pastLengths, [slots]],
      [DecoderIo.logitsIndex, ['logits_count']],
    ]);
    expect(inputs.slice(6).map((v) => [v.name, v.dims])).toEqual(
      Array.from({ length: config.numLayers }, (_, l) =>
        Array.from({ length: slots }, (_, s) => [
          [DecoderIo.pastKey(l, s), [config.numKvHeads, `capacity_${s}`, config.headDim]],
          [DecoderIo.pastValue(l, s), [config.numKvHeads, `capacity_${s}`, config.headDim]],
        ]).flat(),
      ).flat(),
    );
    expect(g.output!.map((v) => readValueInfo(v)).map((v) => [v.name, v.dims])).toEqual([
      [DecoderIo.logits, ['logits_count', config.vocabSize]],
      ...Array.from({ length: config.numLayers }, (_, l) => [
        [DecoderIo.newKey(l), [config.numKvHeads, 'tokens', config.headDim]],
        [DecoderIo.newValue(l), [config.numKvHeads, 'tokens', config.headDim]],
      ]).flat(),
    ]);
    // No frequencies in the graph: nothing of the model's schedule is frozen into it.
    expect(g.node!.some((n) => ['Cos', 'Sin', 'If'].includes(n.opType ?? ''))).toBe(false);
    expect(model.opsetImport!.map((o) => [o.domain, Number(o.version)])).toEqual([['', 23], ['com.microsoft', 1]]);
  });

  it('tied embeddings: the lm head is the embedding, transposed', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}seed4-llama-dynamic`);
    expect(config.tieWordEmbeddings).toBe(true);
    const { model } = buildDecoderModel(config, weights);
    const embed = weights.get('model.embed_tokens.weight');
    await weights.close();
    const init = (name: string) => tensorToArray(model.graph!.initializer!.find((t) => t.name === name)!) as Float32Array;
    const lmHead = init('lm_head.weight_t');
    const H = config.hiddenSize;
    expect(maxAbsDiff(init('model.embed_tokens.weight'), embed)).toBe(0);
    for (const [h, v] of [[3, 7], [0, config.vocabSize - 1], [H - 1, 11]] as const) expect(lmHead[h * config.vocabSize + v]).toBe(embed[v * H + h]);
  });

  it('interleaved pairing, partial rotary, GQA and biases match the reference backend (chunked prefill, decode, cached keys)', async () => {
    const cacheDir = tempDir();
    const { weights } = await loadCheckpoint(`${hfDir}seed4-llama-dynamic`);
    try {
      // Chunks of 8 attend to the cache in place; chunks of 16 to a compact copy of its valid rows.
      for (const [patch, prefillChunk] of [
        [{ rope_interleaved: true }, 8],
        [{ partial_rotary_factor: 0.5 }, 16],
        [{ partial_rotary_factor: 0.5, rope_interleaved: true, attention_bias: true, mlp_bias: true }, 16],
      ] as const) {
        const config = variantConfig('seed4-llama-dynamic', patch);
        const store = withBiases(weights, config);
        expect(await compareWithReference(config, store, { cacheDir, prefillChunk }), JSON.stringify(patch)).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      await weights.close();
    }
  });
});

describe('onnxruntime backend: exported models cached on disk', () => {
  const settings = (config: ModelConfig) => ({ config, slots: DEFAULT_ROW_SLOTS });

  it('exports once per (config, weights, options, exporter version), then reuses the folder', async () => {
    const cacheDir = tempDir();
    const { config, weights } = await loadCheckpoint(`${hfDir}seed2-mha`);
    const other = await loadCheckpoint(`${hfDir}seed1-gqa`);
    try {
      const key = exportKey(settings(config), contentDigest(config, weights));
      // A crashed export's leftover must not be mistaken for a model.
      mkdirSync(join(cacheDir, `ropeswitch-onnx-${key}.partial-1-dead`));
      const first = cachedExport(settings(config), { weights }, { cacheDir });
      const second = cachedExport(settings(config), { weights }, { cacheDir });
      expect([first.created, second.created]).toEqual([true, false]);
      expect(second.dir).toBe(first.dir);
      expect(first.manifest.key).toBe(key);
      const backend = await OnnxRuntimeBackend.open(config, weights, { cacheDir });
      expect(backend.exported.created).toBe(false);
      expect(backend.exported.dir).toBe(first.dir);
      await backend.dispose();
      // Different weights, different key; the same weights under another config, another key; other options, another key.
      expect(exportKey(settings(other.config), contentDigest(other.config, other.weights))).not.toBe(key);
      const digest = contentDigest(config, weights);
      expect(exportKey(settings(variantConfig('seed2-mha', { rms_norm_eps: 1e-6 })), digest)).not.toBe(key);
      expect(exportKey({ ...settings(config), slots: 2 }, digest)).not.toBe(key);
      expect(exportKey({ ...settings(config), quantization: { mode: 'int4', blockSize: 32, accuracyLevel: 4 } }, digest)).not.toBe(key);
      const finals = readdirSync(cacheDir).filter((f) => !f.includes('.partial-'));
      expect(finals).toEqual([`ropeswitch-onnx-${key}`]);
      expect(readdirSync(join(cacheDir, finals[0]!)).sort()).toEqual([MANIFEST_FILE, MODEL_FILE, DATA_FILE].sort());
    } finally {
      await weights.close();
      await other.weights.close();
    }
  });

  it('an unwritable cache folder fails with a BackendError and leaves nothing behind', async () => {
    const parent = tempDir();
    const notADir = join(parent, 'file');
    writeFileSync(notADir, 'x');
    const { config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`);
    try {
      await expect(OnnxRuntimeBackend.open(config, weights, { cacheDir: notADir })).rejects.toMatchObject({ name: 'BackendError', code: 'export-failed' });
      expect(readdirSync(parent)).toEqual(['file']);
    } finally {
      await weights.close();
    }
  });
});

describe('onnxruntime backend: options and errors', () => {
  let config: ModelConfig;
  let weights: WeightStore;
  beforeAll(async () => {
    ({ config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`));
  });
  afterAll(async () => {
    await weights.close();
  });

  it('rejects bad options with typed errors before exporting anything', async () => {
    const bad = [{ threads: 0 }, { threads: 1.5 }, { prefillChunk: 0 }, { anglePrecision: 'float16' }, { executionProvider: 'tpu' }, { prepackWeights: 1 }, { cachePoolBytes: -1 }, { cachePoolBytes: 1.5 }];
    for (const options of bad) {
      await expect(OnnxRuntimeBackend.open(config, weights, options as never), JSON.stringify(options)).rejects.toMatchObject({ name: 'BackendError', code: 'bad-option' });
    }
  });

  it('asking for CUDA where onnxruntime-node has no CUDA binaries says how to enable them', async () => {
    const error = await OnnxRuntimeBackend.open(config, weights, { executionProvider: 'cuda' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendError);
    expect(error).toMatchObject({ code: 'provider-unavailable' });
    expect((error as Error).message).toMatch(/allowBuilds/);
    expect((error as Error).message).toMatch(/--onnxruntime-node-install=cuda12/);
  });

  it('an aborted forward leaves every cache as it was, and the next forward is unaffected', async () => {
    const backend = await OnnxRuntimeBackend.open(config, weights, { prefillChunk: 4 });
    const regime = createRopeSchedule(config.rope).regimeFor(1);
    const cache = backend.createCache();
    const other = backend.createCache();
    const prompt = [1, 2, 3, 4, 5, 6];
    await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache, regime }] });
    const keysBefore = readCpuLayerKeys(cache, 1);
    const tail = Array.from({ length: 10 }, (_, i) => i + 20);
    const rows = [
      { tokens: [9], positions: [6], cache, regime },
      { tokens: tail, positions: tail.map((_, i) => i), cache: other, regime },
    ];
    // Aborts after the first row and the first chunk of the second have written their rows.
    let checks = 0;
    const signal = { throwIfAborted: () => { if (++checks > 2) throw new DOMException('stop', 'AbortError'); }, aborted: false } as unknown as AbortSignal;
    await expect(backend.forward({ rows, signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(checks).toBe(3);
    expect([cache.length, other.length]).toEqual([6, 0]);
    expect(Array.from(cache.tokens())).toEqual(prompt);
    expect(readCpuLayerKeys(cache, 1)).toEqual(keysBefore);
    // The same request without the abort equals a fresh run on the reference backend.
    const ref = new ReferenceBackend(config, weights);
    const refCache = ref.createCache();
    await ref.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache: refCache, regime }] });
    const [mine, theirs] = [await backend.forward({ rows: [rows[0]!] }), await ref.forward({ rows: [{ ...rows[0]!, cache: refCache }] })];
    expect(maxAbsDiff(mine.rows[0]!.data, theirs.rows[0]!.data)).toBeLessThanOrEqual(1e-4);
    [cache, other, refCache].forEach((c) => c.dispose());
    await ref.dispose();
    await backend.dispose();
    await expect(backend.forward({ rows: [rows[0]!] })).rejects.toMatchObject({ code: 'disposed' });
  });

  it('a clone on blocks another cache gave back (NaN left in every row) computes what it computes on fresh memory; the pool is off with cachePoolBytes 0', async () => {
    const regime = createRopeSchedule(config.rope).regimeFor(1);
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 13 + 5) % config.vocabSize);
    const run = async (backend: OnnxRuntimeBackend) => {
      const outputs: number[] = [];
      // A chunked prefill into a cache reserved well past it, twice: every chunk after the first gets a compact copy (pool scratch).
      for (let round = 0; round < 2; round++) {
        const cache = backend.createCache();
        cache.reserve(400);
        const first = await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache, regime }] });
        outputs.push(...first.rows[0]!.data);
        cache.dispose();
      }
      const source = backend.createCache();
      source.reserve(prompt.length);
      await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache: source, regime }] });
      // Blocks of the size the clone asks for, left full of NaN and given back.
      const old = backend.createCache() as CpuKvCache;
      old.reserve(48);
      const poisoned = old.keys(0).buffer;
      for (let l = 0; l < config.numLayers; l++) [old.keys(l), old.values(l)].forEach((a) => a.fill(Number.NaN));
      old.dispose();
      // 40 rows of 48 copied in: the clone takes a given-back block when there is one; the 8 rows past them are read, masked, by the next step.
      const clone = source.clone({ capacity: 48 }) as CpuKvCache;
      const reused = clone.keys(0).buffer === poisoned;
      const next = await backend.forward({ rows: [{ tokens: [7], positions: [prompt.length], cache: clone, regime }] });
      outputs.push(...next.rows[0]!.data);
      const hits = backend.cachePoolStats.hits;
      [source, clone].forEach((c) => c.dispose());
      await backend.dispose();
      expect(backend.cachePoolStats.pooledBytes).toBe(0);
      return { outputs: Float32Array.from(outputs), reused, hits };
    };
    const pooled = await run(await OnnxRuntimeBackend.open(config, weights, { prefillChunk: 16 }));
    const unpooled = await run(await OnnxRuntimeBackend.open(config, weights, { prefillChunk: 16, cachePoolBytes: 0 }));
    expect(pooled.reused).toBe(true);
    expect(unpooled.reused).toBe(false);
    // The second prefill's compact copies and the clone came from blocks given back before.
    expect(pooled.hits).toBeGreaterThan(0);
    expect(unpooled.hits).toBe(0);
    expect(pooled.outputs.every(Number.isFinite)).toBe(true);
    expect(pooled.outputs).toEqual(unpooled.outputs);
  });

  it("a cache reserved far ahead has its pages read a budget per run: until then a step attends to a compact copy, then to the cache; the logits are a small cache's", async () => {
    const regime = createRopeSchedule(config.rope).regimeFor(1);
    const { numLayers, numKvHeads, headDim } = config;
    const rowBytes = 2 * numLayers * numKvHeads * headDim * 4;
    // 2.5 runs' worth of the 16 MiB a decode step reads ahead.
    const rows = Math.ceil((40 * 2 ** 20) / rowBytes);
    const backend = await OnnxRuntimeBackend.open(config, weights);
    try {
      const decode = async (reserve: number) => {
        const cache = backend.createCache();
        cache.reserve(reserve);
        const logits: Float32Array[] = [];
        const scratch: number[] = [];
        for (let t = 0; t < 6; t++) {
          const before = backend.cachePoolStats;
          const out = await backend.forward({ rows: [{ tokens: [(t * 29 + 3) % config.vocabSize], positions: [t], cache, regime }] });
          const after = backend.cachePoolStats;
          // Blocks the step took: a compact copy of the valid rows, given back at its end.
          scratch.push(after.hits + after.misses - before.hits - before.misses);
          logits.push(out.rows[0]!.data.slice());
        }
        cache.dispose();
        return { logits, scratch };
      };
      const far = await decode(rows);
      const near = await decode(8);
      // Each step first reads 16 MiB ahead. Step 0 has no valid rows (nothing to attend to); after
      // step 1's read 8 MiB are still unread, so it gets a compact copy; step 2 reads the rest and gets the cache.
      expect(far.scratch).toEqual([0, 2 * numLayers, 0, 0, 0, 0]);
      expect(near.scratch).toEqual([0, 0, 0, 0, 0, 0]);
      for (let t = 0; t < 6; t++) expect(maxAbsDiff(far.logits[t]!, near.logits[t]!), `step ${t}`).toBeLessThanOrEqual(1e-5);
    } finally {
      await backend.dispose();
    }
  });

  it('weights prepacked by onnxruntime or memory-mapped as exported give the same logits, within 1e-4 of the reference backend', async () => {
    const regime = createRopeSchedule(config.rope).regimeFor(1);
    const prompt = Array.from({ length: 24 }, (_, i) => (i * 11 + 3) % config.vocabSize);
    const run = async (backend: { createCache(): KvCache; forward: ReferenceBackend['forward']; dispose(): Promise<void> }) => {
      const cache = backend.createCache();
      const first = await backend.forward({ rows: [{ tokens: prompt, positions: prompt.map((_, i) => i), cache, regime, logits: 4 }] });
      const next = await backend.forward({ rows: [{ tokens: [5], positions: [prompt.length], cache, regime }] });
      cache.dispose();
      await backend.dispose();
      return [...first.rows[0]!.data, ...next.rows[0]!.data];
    };
    const [mapped, packed, ref] = [
      await run(await OnnxRuntimeBackend.open(config, weights, { prepackWeights: false })),
      await run(await OnnxRuntimeBackend.open(config, weights)),
      await run(new ReferenceBackend(config, weights)),
    ];
    expect(mapped.length).toBe(5 * config.vocabSize);
    expect(maxAbsDiff(Float32Array.from(mapped), Float32Array.from(packed))).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(Float32Array.from(mapped), Float32Array.from(ref))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(Float32Array.from(packed), Float32Array.from(ref))).toBeLessThanOrEqual(1e-4);
  });

  it('float64 angles follow the option and match the reference backend’s float64 mode past the threshold', async () => {
    const backend = await OnnxRuntimeBackend.open(config, weights, { anglePrecision: 'float64' });
    const ref = new ReferenceBackend(config, weights, { anglePrecision: 'float64' });
    const ref32 = new ReferenceBackend(config, weights);
    expect(backend.capabilities).toMatchObject({ cacheLocation: 'cpu', maxRows: Infinity, rerotateKeys: true, anglePrecision: 'float64' });
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 7) % config.vocabSize);
    const row = (cache: KvCache) => ({ tokens: prompt, positions: prompt.map((_, i) => i + 200), cache, regime: createRopeSchedule(config.rope).regimeFor(241) });
    const caches = [backend.createCache(), ref.createCache(), ref32.createCache()];
    const [a, b, c] = [await backend.forward({ rows: [row(caches[0]!)] }), await ref.forward({ rows: [row(caches[1]!)] }), await ref32.forward({ rows: [row(caches[2]!)] })];
    expect(maxAbsDiff(a.rows[0]!.data, b.rows[0]!.data)).toBeLessThanOrEqual(1e-4);
    // The option changes the result (else the comparison above would not test it).
    expect(maxAbsDiff(b.rows[0]!.data, c.rows[0]!.data)).toBeGreaterThan(0);
    caches.forEach((x) => x.dispose());
    await Promise.all([ref.dispose(), ref32.dispose(), backend.dispose()]);
  });
});
