/**
 * The onnxruntime-genai layout at scale: GenaiOnnxBackend rewrites the builder's GroupQueryAttention
 * into attention over caller-owned caches (no per-step copy: the caches are the session's inputs,
 * only new rows come out), packs a request's rows into one run, and runs the writer's int4
 * (`MatMulNBits`), float16 and q4f16 variants, each against the same model run unmodified.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DecoderIo, GenaiOnnxBackend, type WriteGenaiModelOptions, readGenaiConfig, readValueInfo, rewriteGenaiAttention, writeGenaiModel } from '@ropeswitch/backend-onnxruntime';
import { type CpuKvCache, type ModelConfig, WeightsError, createRopeSchedule, generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TRAINED_MODEL_DIR } from '../packages/cli/src/index.js';
import { createGenaiSession, runGenaiStep } from '../packages/backends/onnxruntime/src/genai/genai-session.js';
import { onnx } from '../packages/backends/onnxruntime/src/onnx/onnx-namespace.js';
import { maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

const tempDir = scratchDirs('ropeswitch-genai-rewrite-');
const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 11) % 48));
const prompt = [0, ...content, 1]; // the trained model's copy task: [BOS] x1..x50 [SEP], L = 64
const target = [...content, 2];

let config: ModelConfig;
const written = new Map<string, Promise<string>>();
/** The trained model written in the genai layout with `options`, once per variant. */
function variant(options: WriteGenaiModelOptions): Promise<string> {
  const key = JSON.stringify(options);
  let dir = written.get(key);
  if (!dir) {
    dir = (async () => {
      const out = tempDir();
      const { weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
      await writeGenaiModel(out, config, weights, options);
      await weights.close();
      return out;
    })();
    written.set(key, dir);
  }
  return dir;
}

beforeAll(async () => {
  const checkpoint = await loadCheckpoint(TRAINED_MODEL_DIR);
  config = checkpoint.config;
  await checkpoint.weights.close();
});

describe('rewriteGenaiAttention', () => {
  it('replaces GroupQueryAttention by attention over caller-owned caches, with the exporter’s inputs and outputs, and keeps every weight', async () => {
    const dir = await variant({});
    const genai = await readGenaiConfig(dir);
    const modelPath = join(dir, 'model.onnx');
    const dataHash = createHash('sha256').update(readFileSync(join(dir, 'model.onnx.data'))).digest('hex');
    const original = onnx.ModelProto.decode(readFileSync(modelPath));
    const rewrite = rewriteGenaiAttention(new Uint8Array(readFileSync(modelPath)), { slots: 3, headDim: config.headDim, rotaryDim: config.rope.rotaryDim, maxPositions: config.maxPositionEmbeddings, names: genai.names });
    const graph = onnx.ModelProto.decode(rewrite.model).graph!;
    const ops = graph.node!.map((n) => n.opType);
    expect(ops).not.toContain('GroupQueryAttention');
    expect(ops).not.toContain('If');
    expect(ops.filter((o) => o === 'RotaryEmbedding')).toHaveLength(2 * config.numLayers);
    expect(rewrite.removedNodes.filter((n) => n.endsWith('GroupQueryAttention'))).toHaveLength(config.numLayers);
    const inputs = graph.input!.map((v) => readValueInfo(v));
    expect(inputs.slice(0, 6).map((v) => v.name)).toEqual([DecoderIo.inputIds, DecoderIo.ropeCos, DecoderIo.ropeSin, DecoderIo.rowOffsets, DecoderIo.pastLengths, DecoderIo.logitsIndex]);
    expect(inputs.slice(6).map((v) => [v.name, v.dims])).toEqual(
      Array.from({ length: config.numLayers }, (_, l) =>
        [0, 1, 2].flatMap((s) => [
          [DecoderIo.pastKey(l, s), [config.numKvHeads, `capacity_${s}`, config.headDim]],
          [DecoderIo.pastValue(l, s), [config.numKvHeads, `capacity_${s}`, config.headDim]],
        ]),
      ).flat(),
    );
    // No attention_mask, no past_key_values.*: nothing of the old cache contract is left; only new rows come out.
    expect(graph.output!.map((o) => o.name)).toEqual([DecoderIo.logits, ...Array.from({ length: config.numLayers }, (_, l) => [DecoderIo.newKey(l), DecoderIo.newValue(l)]).flat()]);
    // Every original initializer is kept with its external-data entries; the data file is untouched.
    const entries = (g: typeof graph) => new Map(g.initializer!.map((t) => [t.name ?? '', JSON.stringify(t.externalData)]));
    const after = entries(graph);
    for (const [name, ext] of entries(original.graph!)) expect(after.get(name), name).toBe(ext);
    expect(createHash('sha256').update(readFileSync(join(dir, 'model.onnx.data'))).digest('hex')).toBe(dataHash);
  });

  it('refuses a sliding window shorter than the model’s positions', async () => {
    const dir = await variant({});
    const genai = await readGenaiConfig(dir);
    const bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
    const options = { slots: 1, headDim: config.headDim, rotaryDim: config.rope.rotaryDim, names: genai.names };
    const model = onnx.ModelProto.decode(bytes);
    for (const n of model.graph!.node!) for (const a of n.attribute ?? []) if (a.name === 'local_window_size') a.i = 32;
    const windowed = onnx.ModelProto.encode(model).finish();
    expect(() => rewriteGenaiAttention(windowed, { ...options, maxPositions: 4096 })).toThrowError(expect.objectContaining({ code: 'unsupported-layout' }));
    expect(() => rewriteGenaiAttention(windowed, { ...options, maxPositions: 4096 })).toThrow(WeightsError);
    expect(rewriteGenaiAttention(windowed, { ...options, maxPositions: 32 }).attention.layers).toBe(config.numLayers);
  });
});

describe('GenaiOnnxBackend on the rewritten graph', () => {
  let batched: GenaiOnnxBackend;
  let single: GenaiOnnxBackend;
  beforeAll(async () => {
    const dir = await variant({});
    batched = await GenaiOnnxBackend.open(dir, { hfConfigDir: TRAINED_MODEL_DIR, sessionOptions, prefillChunk: 16 });
    single = await GenaiOnnxBackend.open(dir, { hfConfigDir: TRAINED_MODEL_DIR, sessionOptions, prefillChunk: 16, rowsPerRun: 1 });
  });
  afterAll(async () => {
    await batched?.dispose();
    await single?.dispose();
  });

  it('hands the caches to onnxruntime as they are, runs a decode row and a shadow chunk in one run, within 1e-5 of one row per run', async () => {
    const schedule = createRopeSchedule(config.rope);
    const caches = [batched, single].map((b) => [b.createCache(), b.createCache()] as CpuKvCache[]);
    const step = async (k: number, rows: [number[], number, number][]) =>
      (k === 0 ? batched : single).forward({
        rows: rows.map(([tokens, regimeLength, logits], i) => {
          const cache = caches[k]![i]!;
          return { tokens, positions: tokens.map((_, j) => cache.length + j), cache, regime: schedule.regimeFor(regimeLength), logits };
        }),
      });
    const prefill: [number[], number, number][] = [[prompt.slice(0, 40), 40, 1], [prompt.slice(0, 20), 100, 0]];
    const decode: [number[], number, number][] = [[[7], 41, 1], [prompt.slice(20, 23), 100, 0]];
    for (const rows of [prefill, decode]) {
      const spy = vi.spyOn(batched['session']!, 'run');
      const a = await step(0, rows);
      const b = await step(1, rows);
      const feeds = spy.mock.calls.at(-1)![0] as Record<string, { data: unknown }>;
      // The caches themselves are the session's inputs: no copy of the past.
      if (caches[0]![0]!.length > 0) expect(feeds[DecoderIo.pastKey(0, 0)]!.data).toBe(caches[0]![0]!.keys(0));
      expect(spy.mock.calls.length).toBe(rows === prefill ? 3 : 1); // 40 tokens in pieces of 16 / one run
      spy.mockRestore();
      a.rows.forEach((r, i) => expect(maxAbsDiff(r.data, b.rows[i]!.data), `row ${i}`).toBeLessThanOrEqual(1e-5));
    }
    caches.flat().forEach((c) => c.dispose());
  });
});

describe('writeGenaiModel variants, unmodified and rewritten', () => {
  // Tolerances against the unmodified graph, for logits up to ~17: float16 models differ by their
  // attention's precision (theirs float16, ours float32; measured 0.039), q4f16 ones by that error
  // rounded into int8 activations too (measured 0.17); both with a margin of 2.
  const variants: [string, WriteGenaiModelOptions, number][] = [
    ['int4 (MatMulNBits)', { quantize: 'int4' }, 1e-4],
    ['float16', { precision: 'fp16' }, 0.08],
    ['q4f16 (int4 + float16)', { quantize: 'int4', precision: 'fp16' }, 0.35],
  ];
  for (const [label, options, tol] of variants) {
    it(`${label}: the written graph runs unmodified, GenaiOnnxBackend agrees with it and copies across the crossing`, async () => {
      const dir = await variant(options);
      const genai = await readGenaiConfig(dir);
      const graph = onnx.ModelProto.decode(readFileSync(join(dir, genai.fileName))).graph!;
      if (options.quantize) expect(graph.node!.filter((n) => n.opType === 'MatMulNBits')).toHaveLength(4 * config.numLayers + 1 + config.numLayers);
      const floatType = options.precision === 'fp16' ? 10 : 1;
      expect(readValueInfo(graph.input!.find((i) => i.name === 'past_key_values.0.key')!).elemType).toBe(floatType);
      // Unmodified: its own If, its own past → present buffers.
      const native = await createGenaiSession(join(dir, genai.fileName), dir, sessionOptions);
      const empty = Array.from({ length: config.numLayers }, () => new Float32Array(0));
      const ids = prompt.slice(0, 30);
      const theirs = (await runGenaiStep(native, genai.names, config, { tokens: ids, pastKeys: empty, pastValues: empty, pastLength: 0 })).logits;
      await native.release();
      const backend = await GenaiOnnxBackend.open(dir, { hfConfigDir: TRAINED_MODEL_DIR, sessionOptions });
      expect(backend.rewrite.elemType).toBe(floatType);
      const cache = backend.createCache();
      const regime = createRopeSchedule(config.rope).regimeFor(ids.length);
      const mine = (await backend.forward({ rows: [{ tokens: ids, positions: ids.map((_, i) => i), cache, regime, logits: ids.length }] })).rows[0]!.data;
      cache.dispose();
      expect(maxAbsDiff(mine, theirs)).toBeLessThanOrEqual(tol);
      const result = await generate(wrapBackend(backend, shadowPrefill()), prompt, { maxNewTokens: target.length, collectLogits: false });
      expect(result.tokens).toEqual(target);
      await backend.dispose();
    });
  }
});
