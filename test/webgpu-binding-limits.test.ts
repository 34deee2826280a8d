import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { WebGpuBackend, readLayerKeys } from '@ropeswitch/backend-webgpu';
import { createNodeWebGpuBackend, requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import { BackendError, LongRopeSchedule, createRopeSchedule, loadCheckpoint, noCacheForward } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uploadDecoderWeights } from '../packages/backends/webgpu/src/gpu-weights.js';
import { describeBackendParity } from './conformance/backend-parity.js';
import { readCpuLayerKeys } from './conformance/policy-runs.js';
import { describePolicyConformance } from './conformance/policy-suite.js';
import { hfDir, maxAbsDiff, readExpected } from './support/fixtures.js';

// The WebGPU backend on a device whose storage bindings hold 4 KiB, as a device would whose
// maxStorageBufferBindingSize is far below the model (Phi-3-mini's 394 MB embedding on a 128 MiB
// binding, scaled down to the fixtures: hidden 64, vocab 128, intermediate 128). Every matrix is cut
// into row blocks (embedding and LM head 8, gate_up 16), a forward of more than 4 tokens runs in
// passes of 4, logits in passes of 8 rows, and a cache past 32 indices keeps one KV head per block.
// Results must stay the reference backend's, through every path a policy uses.
const BINDING = 4096;

async function open(dir: string, maxBindingBytes = BINDING) {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return await createNodeWebGpuBackend(config, weights, { adapter: 'software', maxBindingBytes });
  } finally {
    await weights.close();
  }
}

const options = { logitTolerance: 1e-3, keyTolerance: 1e-4, readLayerKeys };
// Parity on GQA with LongRoPE (fused Phi-3 projections, untied LM head) and on Llama's split
// projections with tied embeddings and dynamic NTK; every policy (shadow chunks batched with decode
// rows among them) on the first. The 4090-token case needs 256 KiB per cached head, past 4 KiB: it
// runs in webgpu-conformance at the device's limits.
describeBackendParity(`webgpu, ${BINDING}-byte storage bindings`, (dir) => open(dir), { ...options, cases: ['seed1-gqa', 'seed4-llama-dynamic'] });
describePolicyConformance(`webgpu, ${BINDING}-byte storage bindings`, (dir) => open(dir), { ...options, cases: ['seed1-gqa'] });

describe('WebGPU backend past the storage binding limit', () => {
  const CASE = 'seed1-gqa';
  const e = readExpected(CASE);
  let small: WebGpuBackend;
  let full: WebGpuBackend;
  let ref: ReferenceBackend;
  beforeAll(async () => {
    small = await open(`${hfDir}${CASE}`);
    full = await open(`${hfDir}${CASE}`, Number.MAX_SAFE_INTEGER);
    const { config, weights } = await loadCheckpoint(`${hfDir}${CASE}`);
    ref = new ReferenceBackend(config, weights);
    await weights.close();
  });
  afterAll(async () => {
    await small?.dispose();
    await full?.dispose();
    await ref?.dispose();
  });

  it('cuts every matrix past one binding into row blocks, and forwards into passes', () => {
    expect(small.maxBindingBytes).toBe(BINDING);
    expect(Object.fromEntries(small.matrixBlocks)).toMatchObject({
      'model.embed_tokens.weight': 8, // 128 rows × 256 bytes, 16 rows a block
      'lm_head.weight': 8,
      'model.layers.0.self_attn.qkv_proj.weight': 8,
      'model.layers.0.self_attn.o_proj.weight': 4,
      'model.layers.1.mlp.gate_up_proj.weight': 16,
      'model.layers.1.mlp.down_proj.weight': 8, // rows of 128 floats: 8 a block
    });
    expect(small.passLimits).toEqual({ tokens: 4, logitRows: 8 }); // gate_up: 1 KiB a token; logits: 512 bytes a row
    // At the device's own limit (128 MiB on llvmpipe) everything is one block and one pass.
    expect(full.maxBindingBytes).toBe(Math.min(full.device.limits.maxStorageBufferBindingSize, full.device.limits.maxBufferSize));
    expect(new Set(full.matrixBlocks.values())).toEqual(new Set([1]));
  });

  it('a 28-token prefill in 7 passes with logits of every position equals one pass and the reference', async () => {
    const all = { last: e.prompt.length };
    const split = await noCacheForward(small, e.prompt, all);
    const whole = await noCacheForward(full, e.prompt, all);
    const theirs = await noCacheForward(ref, e.prompt, all);
    expect(split.length).toBe(e.prompt.length * small.config.vocabSize);
    // The same sums in the same order: splitting changes float rounding nowhere but may let the
    // shader compiler contract differently; 1e-5 is far below the 1e-3 bar.
    expect(maxAbsDiff(split, whole)).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(split, theirs)).toBeLessThanOrEqual(1e-3);
  });

  it('a batch of a prefill past one pass, a decode row and a shadow chunk under another regime keeps each row’s cache and logits', async () => {
    const schedule = createRopeSchedule(small.config.rope) as LongRopeSchedule;
    const prompt = e.prompt;
    const backends = [small, ref] as const;
    const caches = backends.map((b) => [b.createCache(), b.createCache(), b.createCache()]);
    try {
      // Rows 1 and 2 first hold 20 tokens: a live cache and its long-regime shadow copy.
      for (const [i, b] of backends.entries()) {
        await b.forward({
          rows: [
            { tokens: prompt.slice(0, 20), positions: prompt.slice(0, 20).map((_, k) => k), cache: caches[i]![1]!, regime: schedule.short },
            { tokens: prompt.slice(0, 9), positions: prompt.slice(0, 9).map((_, k) => k), cache: caches[i]![2]!, regime: schedule.long, logits: 0 },
          ],
        });
      }
      const rows = (c: (typeof caches)[number]) => [
        { tokens: prompt, positions: prompt.map((_, k) => k), cache: c[0]!, regime: schedule.short, logits: 11 },
        { tokens: [prompt[20]!], positions: [20], cache: c[1]!, regime: schedule.short },
        { tokens: prompt.slice(9, 14), positions: [9, 10, 11, 12, 13], cache: c[2]!, regime: schedule.long, logits: 2 },
      ];
      const [mine, theirs] = await Promise.all(backends.map((b, i) => b.forward({ rows: rows(caches[i]!) })));
      expect(mine!.rows.map((r) => r.count)).toEqual([11, 1, 2]);
      mine!.rows.forEach((r, i) => expect(maxAbsDiff(r.data, theirs!.rows[i]!.data), `row ${i}`).toBeLessThanOrEqual(1e-3));
      expect(caches[0]!.map((c) => c.length)).toEqual([28, 21, 14]);
      for (let layer = 0; layer < 2; layer++) {
        const keys = await readLayerKeys(caches[0]![2]!, layer);
        expect(maxAbsDiff(keys, readCpuLayerKeys(caches[1]![2]!, layer)), `shadow keys, layer ${layer}`).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      caches.flat().forEach((c) => c.dispose());
    }
  });

  it('fails at create, naming what does not fit and both sizes, where no split helps', async () => {
    const { config, weights } = await loadCheckpoint(`${hfDir}${CASE}`);
    const { device } = await requestNodeGpuDevice({ adapter: 'software' });
    try {
      // One token's gate_up activation (2 × 128 floats) is 1024 bytes.
      const create = (maxBindingBytes: number) => WebGpuBackend.create(config, weights, { device, maxBindingBytes });
      await expect(create(512)).rejects.toThrow(BackendError);
      await expect(create(512)).rejects.toMatchObject({ code: 'tensor-too-large', message: expect.stringMatching(/gate_up projection.*1024 bytes.*512 bytes/) });
      await expect(create(0)).rejects.toMatchObject({ code: 'bad-option' });
      // A matrix row past the binding (embedding rows are 256 bytes), checked as the weights upload.
      expect(() => uploadDecoderWeights(device, config, weights, 128)).toThrow(expect.objectContaining({ code: 'tensor-too-large', message: expect.stringMatching(/^model\.embed_tokens\.weight: one row is 256 bytes.*128 bytes/) }));
    } finally {
      await weights.close();
      device.destroy();
    }
  });
});
