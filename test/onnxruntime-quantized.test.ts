/**
 * Quantized onnxruntime exports: the projections and the LM head as `MatMulNBits` blocks (int4 /
 * int8, blocks of 32, a scale and zero point each), the embedding float32. An export at
 * `accuracyLevel: 0` (float compute) must equal the reference backend run on the dequantized
 * weights, which pins down the block layout; the default level 4 (int8 activations) stays close.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OnnxRuntimeBackend, buildDecoderModel, dequantize, quantizeBlockwise, readAttribute } from '@ropeswitch/backend-onnxruntime';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type ModelConfig, type WeightStore, loadCheckpoint, noCacheForward } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTinyModel } from '../packages/cli/src/index.js';
import { hfDir, maxAbsDiff } from './support/fixtures.js';
import { scratchDirs } from './support/onnxruntime.js';

const tempDir = scratchDirs('ropeswitch-ort-quant-');

describe('quantizeBlockwise', () => {
  const random = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.5 + (i % 7 === 0 ? 0.8 : 0));

  for (const bits of [4, 8] as const) {
    it(`${bits} bits: every weight within half a step of its block's scale, zeros exact, the packed layout as MatMulNBits reads it`, () => {
      const n = 5;
      const k = 96;
      const w = random(n * k, bits);
      w[3] = 0;
      const q = quantizeBlockwise(w, n, k, bits, 32);
      expect(q.data.length).toBe((n * k * bits) / 8);
      expect(q.scales.length).toBe(n * 3);
      const back = dequantize(q);
      for (let i = 0; i < w.length; i++) {
        const scale = q.scales[Math.floor(i / 32)]!;
        expect(Math.abs(back[i]! - w[i]!), `weight ${i}`).toBeLessThanOrEqual(scale / 2 + 1e-7);
      }
      expect(back[3]).toBe(0);
      // Row 0, block 0, weights 0 and 1: low nibble first (4 bits), one byte each (8 bits).
      const zp0 = bits === 8 ? q.zeroPoints[0]! : q.zeroPoints[0]! & 15;
      const level = (v: number) => Math.round(v / q.scales[0]! + zp0);
      if (bits === 4) expect(q.data[0]).toBe(level(w[0]!) | (level(w[1]!) << 4));
      else expect([q.data[0], q.data[1]]).toEqual([level(w[0]!), level(w[1]!)]);
    });
  }

  it('refuses an input dim that is not a multiple of the block', () => {
    expect(() => quantizeBlockwise(new Float32Array(40), 1, 40, 4, 32)).toThrow(/not a multiple/);
  });
});

/** `store` with every projection and the LM head replaced by its quantize → dequantize round trip. */
function dequantizedStore(store: WeightStore, config: ModelConfig, bits: 4 | 8): WeightStore {
  const { hiddenSize: H, intermediateSize: I, numHeads, headDim } = config;
  const inDim = (name: string): number | undefined => {
    if (/(qkv_proj|q_proj|k_proj|v_proj|gate_up_proj|gate_proj|up_proj)\.weight$/.test(name) || name === 'lm_head.weight') return H;
    if (name.endsWith('o_proj.weight')) return numHeads * headDim;
    if (name.endsWith('down_proj.weight')) return I;
    return undefined;
  };
  return {
    names: store.names,
    has: (name) => store.has(name),
    info: (name) => store.info(name),
    get: (name, shape) => {
      const w = store.get(name, shape);
      const k = inDim(name);
      return k === undefined || k % 32 !== 0 ? w : dequantize(quantizeBlockwise(w, w.length / k, k, bits, 32));
    },
    close: () => store.close(),
  };
}

describe('onnxruntime backend: quantized exports', () => {
  let config: ModelConfig;
  let weights: WeightStore;
  beforeAll(async () => {
    ({ config, weights } = await loadCheckpoint(`${hfDir}seed1-gqa`));
  });
  afterAll(async () => weights?.close());

  it('writes MatMulNBits (com.microsoft, block 32) for every projection and the LM head, a float32 Gather for the embedding', () => {
    for (const [mode, bits] of [['int4', 4], ['int8', 8]] as const) {
      const { model, quantization } = buildDecoderModel(config, weights, { quantization: { mode, blockSize: 32, accuracyLevel: 4 } });
      const nodes = model.graph!.node!;
      const nbits = nodes.filter((n) => n.opType === 'MatMulNBits');
      expect(nbits).toHaveLength(4 * config.numLayers + 1);
      for (const n of nbits) {
        expect(n.domain).toBe('com.microsoft');
        expect([readAttribute(n, 'bits'), readAttribute(n, 'block_size'), readAttribute(n, 'accuracy_level')]).toEqual([bits, 32, 4]);
      }
      expect(nodes.filter((n) => n.opType === 'MatMul' && (n.input ?? []).some((i) => i.endsWith('.weight_t')))).toHaveLength(0);
      const embed = model.graph!.initializer!.find((t) => t.name === 'model.embed_tokens.weight')!;
      expect(embed.dataType).toBe(1);
      expect(quantization).toMatchObject({ mode, blockSize: 32, accuracyLevel: 4, fellBack: [] });
      expect(quantization.quantized).toContain('lm_head');
      expect(quantization.quantized).toHaveLength(4 * config.numLayers + 1);
    }
  });

  for (const [mode, bits] of [['int4', 4], ['int8', 8]] as const) {
    it(`${mode} at accuracy level 0 equals the reference backend on the dequantized weights; level 4 stays close`, async () => {
      const cacheDir = tempDir();
      const exact = await OnnxRuntimeBackend.open(config, weights, { cacheDir, quantize: mode, accuracyLevel: 0 });
      const fast = await OnnxRuntimeBackend.open(config, weights, { cacheDir, quantize: mode });
      const float = await OnnxRuntimeBackend.open(config, weights, { cacheDir });
      const ref = new ReferenceBackend(config, dequantizedStore(weights, config, bits));
      const ids = Array.from({ length: 24 }, (_, i) => (i * 37 + 5) % config.vocabSize);
      const want = await noCacheForward(ref, ids, { last: ids.length });
      const [got, approx, plain] = [await noCacheForward(exact, ids, { last: ids.length }), await noCacheForward(fast, ids, { last: ids.length }), await noCacheForward(float, ids, { last: ids.length })];
      expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(1e-4);
      // Quantization changes the logits (else the comparison would not test it). Level 4 adds the
      // int8 activations' error, of the size of int8 weights' own (measured: 0.65 against 0.40 here).
      const weightError = maxAbsDiff(plain, want);
      expect(weightError).toBeGreaterThan(1e-2);
      expect(maxAbsDiff(approx, want)).toBeLessThan(2 * weightError);
      expect(exact.exported.manifest.quantization.mode).toBe(mode);
      await Promise.all([exact.dispose(), fast.dispose(), float.dispose(), ref.dispose()]);
    });
  }

  it('a matrix whose input dim is not a multiple of 32 stays float32, named in the manifest; the rest is quantized', async () => {
    const dir = tempDir();
    // hidden 48: qkv, o, gate_up and the LM head (input 48) cannot be quantized; down_proj (input 96) can.
    await makeTinyModel(dir, { seed: 3, hidden: 48, heads: 4, kvHeads: 2, intermediate: 96, originalMax: 32, maxPositions: 128 });
    const checkpoint = await loadCheckpoint(dir);
    const backend = await OnnxRuntimeBackend.open(checkpoint.config, checkpoint.weights, { cacheDir: tempDir(), checkpointDir: dir, quantize: 'int4', accuracyLevel: 0 });
    const ref = new ReferenceBackend(checkpoint.config, dequantizedStore(checkpoint.weights, checkpoint.config, 4));
    const { quantized, fellBack } = backend.exported.manifest.quantization;
    const L = checkpoint.config.numLayers;
    expect(quantized).toEqual(Array.from({ length: L }, (_, l) => `model.layers.${l}.mlp.down_proj`));
    expect(fellBack.map((f) => f.tensor).sort()).toEqual(
      ['lm_head', ...Array.from({ length: L }, (_, l) => ['self_attn.qkv', 'self_attn.o_proj', 'mlp.gate_up'].map((m) => `model.layers.${l}.${m}`)).flat()].sort(),
    );
    expect(fellBack[0]!.reason).toMatch(/input dim 48 is not a multiple of the block size 32/);
    // The manifest on disk says the same.
    expect(JSON.parse(readFileSync(join(backend.exported.dir, 'export.json'), 'utf8')).quantization.fellBack).toEqual(fellBack);
    // Float32 where it fell back, dequantized down_proj where not: the reference on such weights agrees.
    const ids = [3, 9, 27, 81 % checkpoint.config.vocabSize, 5];
    expect(maxAbsDiff(await noCacheForward(backend, ids, { last: ids.length }), await noCacheForward(ref, ids, { last: ids.length }))).toBeLessThanOrEqual(1e-4);
    await Promise.all([backend.dispose(), ref.dispose(), checkpoint.weights.close()]);
  });

  it('rejects a quantization or an accuracy level it does not know, before exporting', async () => {
    for (const options of [{ quantize: 'int3' }, { quantize: 'int4', accuracyLevel: 5 }]) {
      await expect(OnnxRuntimeBackend.open(config, weights, options as never), JSON.stringify(options)).rejects.toMatchObject({ name: 'BackendError', code: 'bad-option' });
    }
  });
});
