/**
 * The onnxruntime-genai layout: a tiny decoder written the way the model builder writes it runs
 * unmodified in onnxruntime-node (its `If` picks the regime from the length), the adapter lifts the
 * rotary tables to inputs without touching the weights, and GenaiOnnxBackend on the adapted model
 * passes the backend parity and policy conformance suites (every HF fixture has head_dim 16, which
 * the CPU GroupQueryAttention kernel needs).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import {
  type Backend,
  ConfigError,
  LongRopeSchedule,
  type ModelConfig,
  type RopeRegime,
  WeightsError,
  createRopeSchedule,
  loadCheckpoint,
  parseModelConfig,
} from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTinyModel } from '../packages/cli/src/index.js';
import { GenaiOnnxBackend, adaptGenaiModel, adaptGenaiModelFile, readGenaiConfig, writeGenaiModel } from '../packages/backends/onnxruntime/src/genai/index.js';
import { createGenaiSession, runGenaiStep } from '../packages/backends/onnxruntime/src/genai/genai-session.js';
import { onnx } from '../packages/backends/onnxruntime/src/onnx/onnx-namespace.js';
import { describeBackendParity } from './conformance/backend-parity.js';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { describePolicyConformance } from './conformance/policy-suite.js';
import { maxAbsDiff } from './support/fixtures.js';

const TOL = 1e-4;
const sessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1 };
const scratch = mkdtempSync(join(tmpdir(), 'ropeswitch-genai-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Writes a checkpoint folder's genai-layout export once per folder. */
const exported = new Map<string, Promise<string>>();
function exportGenai(checkpointDir: string): Promise<string> {
  let dir = exported.get(checkpointDir);
  if (!dir) {
    dir = (async () => {
      const out = join(scratch, `genai-${exported.size}`);
      const { config, weights } = await loadCheckpoint(checkpointDir);
      try {
        await writeGenaiModel(out, config, weights);
      } finally {
        await weights.close();
      }
      return out;
    })();
    exported.set(checkpointDir, dir);
  }
  return dir;
}

/** What the suites call: export the fixture, open the adapted model with the fixture's HF config. */
async function openGenai(checkpointDir: string): Promise<Backend> {
  return GenaiOnnxBackend.open(await exportGenai(checkpointDir), { hfConfigDir: checkpointDir, sessionOptions });
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const decode = (path: string) => onnx.ModelProto.decode(readFileSync(path));

async function referenceLogits(reference: ReferenceBackend, ids: number[], regime: RopeRegime): Promise<Float32Array> {
  const cache = reference.createCache();
  try {
    const positions = ids.map((_, i) => i);
    return (await reference.forward({ rows: [{ tokens: ids, positions, cache, regime, logits: ids.length }] })).rows[0]!.data;
  } finally {
    cache.dispose();
  }
}

describe('onnxruntime-genai layout on a tiny Phi-3 (L = 16, M = 64, head_dim 16)', () => {
  const hfDir = join(scratch, 'tiny-hf');
  let genaiDir: string;
  let config: ModelConfig;
  let reference: ReferenceBackend;
  let schedule: LongRopeSchedule;
  const ids = (n: number) => Array.from({ length: n }, (_, i) => (i * 37 + 11) % 128);

  beforeAll(async () => {
    await makeTinyModel(hfDir, { originalMax: 16, maxPositions: 64, seed: 11 });
    genaiDir = await exportGenai(hfDir);
    const checkpoint = await loadCheckpoint(hfDir);
    config = checkpoint.config;
    reference = new ReferenceBackend(config, checkpoint.weights);
    await checkpoint.weights.close();
    schedule = createRopeSchedule(config.rope) as LongRopeSchedule;
  });
  afterAll(async () => reference?.dispose());

  it('writes model.onnx, model.onnx.data and genai_config.json in the builder layout', async () => {
    const genai = await readGenaiConfig(genaiDir);
    expect(genai.fileName).toBe('model.onnx');
    expect(genai.names.pastKey).toBe('past_key_values.%d.key');
    expect([genai.numLayers, genai.numKvHeads, genai.headSize]).toEqual([config.numLayers, config.numKvHeads, 16]);
    const graph = decode(join(genaiDir, 'model.onnx')).graph!;
    const ops = graph.node!.map((n) => n.opType);
    expect(ops.filter((o) => o === 'GroupQueryAttention')).toHaveLength(config.numLayers);
    expect(ops).toContain('If');
    expect(ops).toContain('SkipSimplifiedLayerNormalization');
    // Every initializer is external, in model.onnx.data.
    expect(graph.initializer!.length).toBeGreaterThan(0);
    for (const t of graph.initializer!) {
      expect(t.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
      expect(t.externalData!.find((e) => e.key === 'location')?.value).toBe('model.onnx.data');
    }
  });

  it('runs unmodified in onnxruntime-node: its If picks short tables up to L and long ones past it, as the reference does', async () => {
    const genai = await readGenaiConfig(genaiDir);
    const session = await createGenaiSession(join(genaiDir, 'model.onnx'), genaiDir, sessionOptions);
    const empty = Array.from({ length: config.numLayers }, () => new Float32Array(0));
    try {
      for (const [n, regime, other] of [
        [16, schedule.short, schedule.long],
        [24, schedule.long, schedule.short],
      ] as const) {
        const prompt = ids(n);
        const out = await runGenaiStep(session, genai.names, config, { tokens: prompt, pastKeys: empty, pastValues: empty, pastLength: 0 });
        expect(maxAbsDiff(out.logits, await referenceLogits(reference, prompt, regime)), `${n} tokens, ${regime.id}`).toBeLessThanOrEqual(TOL);
        // The other regime is far off: the comparison tells the regimes apart.
        expect(maxAbsDiff(out.logits, await referenceLogits(reference, prompt, other))).toBeGreaterThan(100 * TOL);
      }
    } finally {
      await session.release();
    }
  });

  it('the adapter turns the If into cos_cache / sin_cache inputs and keeps every weight entry and byte', async () => {
    const modelPath = join(genaiDir, 'model.onnx');
    const dataPath = join(genaiDir, 'model.onnx.data');
    const dataHash = sha256(dataPath);
    const original = decode(modelPath);
    const adapted = adaptGenaiModel(new Uint8Array(readFileSync(modelPath)));
    expect([adapted.cosCache, adapted.sinCache, adapted.rotaryHalf]).toEqual(['cos_cache', 'sin_cache', 8]);
    expect([...adapted.removedNodes].sort()).toEqual(['/model/constant_nodes/INT64/16', '/model/rope_caches_subgraph/Greater']);
    const graph = onnx.ModelProto.decode(adapted.model).graph!;
    const ops = graph.node!.map((n) => n.opType);
    expect(ops).not.toContain('If');
    expect(ops).not.toContain('Greater');
    // The Gather also feeds total_sequence_length: it stays.
    expect(graph.node!.some((n) => n.name === '/model/attn_mask_reformat/attn_mask_subgraph/Gather')).toBe(true);
    const inputs = graph.input!.map((i) => i.name);
    expect(inputs.slice(-2)).toEqual(['cos_cache', 'sin_cache']);
    expect(inputs.slice(0, -2)).toEqual(original.graph!.input!.map((i) => i.name));
    expect(graph.node!.length).toBe(original.graph!.node!.length - 3);
    // Initializers: same names, dims and external_data entries (file name, offsets, lengths).
    const entries = (g: typeof graph) => g.initializer!.map((t) => ({ name: t.name, dims: t.dims!.map(Number), ext: t.externalData!.map((e) => `${e.key}=${e.value}`) }));
    expect(entries(graph)).toEqual(entries(original.graph!));
    expect(onnx.ModelProto.decode(adapted.model).opsetImport!.map((o) => `${o.domain}:${o.version}`)).toEqual([':21', 'com.microsoft:1']);
    // Adapting twice is refused; the data file was never touched.
    expect(() => adaptGenaiModel(adapted.model)).toThrowError(expect.objectContaining({ code: 'already-adapted' }));
    const info = await adaptGenaiModelFile(modelPath, join(genaiDir, 'model.adapted.onnx'));
    expect(info.removedNodes).toEqual(adapted.removedNodes);
    expect(sha256(dataPath)).toBe(dataHash);
  });

  it('refuses a model without rotary GroupQueryAttention', () => {
    const bytes = onnx.ModelProto.encode({ irVersion: 10, graph: { name: 'g', node: [{ opType: 'Relu', input: ['x'], output: ['y'] }] } }).finish();
    expect(() => adaptGenaiModel(bytes)).toThrow(WeightsError);
    expect(() => adaptGenaiModel(bytes)).toThrowError(expect.objectContaining({ code: 'unsupported-layout' }));
  });

  it('open() needs the HF config.json and checks it against genai_config.json', async () => {
    await expect(GenaiOnnxBackend.open(genaiDir)).rejects.toMatchObject({ code: 'missing-hf-config' });
    const wrong = parseModelConfig(JSON.stringify({ ...JSON.parse(readFileSync(join(hfDir, 'config.json'), 'utf8')), num_hidden_layers: 3 }));
    await expect(GenaiOnnxBackend.open(genaiDir, { config: wrong })).rejects.toMatchObject({ code: 'config-mismatch' });
    const broken = join(scratch, 'broken-genai');
    mkdirSync(broken);
    writeFileSync(join(broken, 'genai_config.json'), JSON.stringify({ model: { vocab_size: 128 } }));
    await expect(readGenaiConfig(broken)).rejects.toMatchObject({ code: 'missing-field', field: 'model.decoder' });
    writeFileSync(join(broken, 'genai_config.json'), '{ "model": ');
    await expect(GenaiOnnxBackend.open(broken, { hfConfigDir: hfDir })).rejects.toBeInstanceOf(ConfigError);
  });

  it('the adapted backend follows the caller: arbitrary positions and regimes, decode across L, rerotation, all as the reference', async () => {
    const backend = await GenaiOnnxBackend.open(genaiDir, { hfConfigDir: hfDir, sessionOptions });
    const mine = [backend.createCache(), backend.createCache()];
    const theirs = [reference.createCache(), reference.createCache()];
    try {
      const prompt = ids(14);
      const shifted = prompt.map((_, i) => i + 9);
      const rows = (caches: typeof mine, regime: RopeRegime, tokens: number[], positions: number[], logits: number) =>
        ({ rows: [{ tokens, positions, cache: caches[0]!, regime, logits }, { tokens, positions: positions.map((p) => p * 2), cache: caches[1]!, regime: schedule.short, logits }] });
      // Long regime below L and shifted positions: what the graph's own If would never do.
      let a = await backend.forward(rows(mine, schedule.long, prompt, shifted, 3));
      let b = await reference.forward(rows(theirs, schedule.long, prompt, shifted, 3));
      a.rows.forEach((r, i) => expect(maxAbsDiff(r.data, b.rows[i]!.data), `prefill row ${i}`).toBeLessThanOrEqual(TOL));
      // Decode one token at a time past L, keeping stale keys (a custom loop's behaviour).
      for (let step = 0; step < 6; step++) {
        const p = 14 + 9 + step;
        a = await backend.forward(rows(mine, schedule.regimeFor(p + 1), [step + 3], [p], 1));
        b = await reference.forward(rows(theirs, schedule.regimeFor(p + 1), [step + 3], [p], 1));
        a.rows.forEach((r, i) => expect(maxAbsDiff(r.data, b.rows[i]!.data), `step ${step} row ${i}`).toBeLessThanOrEqual(TOL));
      }
      expect(mine[0]!.regimeSpans().map((s) => s.regime.id)).toEqual(theirs[0]!.regimeSpans().map((s) => s.regime.id));
      // An aborted call leaves the caches as they were.
      const abort = new AbortController();
      abort.abort();
      await expect(backend.forward({ ...rows(mine, schedule.long, [1], [40], 1), signal: abort.signal })).rejects.toThrow();
      expect(mine.map((c) => c.length)).toEqual([20, 20]);
      // Rerotating the short row into the long regime equals a fresh long prefill at layer 0.
      await backend.rerotateKeys(mine[1]!, schedule.long);
      const fresh = backend.createCache();
      await backend.forward({ rows: [{ tokens: mine[1]!.tokens(), positions: mine[1]!.positions(), cache: fresh, regime: schedule.long, logits: 0 }] });
      expect(maxAbsDiff(readCpuLayerKeys(mine[1]!, 0), readCpuLayerKeys(fresh, 0))).toBeLessThanOrEqual(1e-5);
      fresh.dispose();
    } finally {
      [...mine, ...theirs].forEach((c) => c.dispose());
      await backend.dispose();
    }
  });
});

// The backend-neutral suites on every HF fixture, seed5's real 4096 threshold included (the
// written model's If switches there too; a few seconds in all on a CPU).
describeBackendParity('onnxruntime-genai (adapted builder layout)', openGenai);
describePolicyConformance('onnxruntime-genai (adapted builder layout)', openGenai);
