import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { WebGpuBackend } from '@ropeswitch/backend-webgpu';
import { requestNodeGpuDevice } from '@ropeswitch/backend-webgpu/node';
import { type ModelConfig, WeightsError, type WeightStore, createRopeSchedule, parseModelConfig } from '@ropeswitch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxAbsDiff } from './support/fixtures.js';

// Model shapes the HF fixtures do not cover, on random weights, against the reference backend:
// biases, an untied lm head, interleaved (GPT-J) pairs, partial rotary with an odd number of pairs,
// and dims that are not multiples of 4 (which send the register-blocked set to its fallbacks).
const variants: Record<string, Record<string, unknown>> = {
  'llama: q/k/v and MLP biases, untied lm head, interleaved pairs, GQA 4/2': {
    model_type: 'llama', hidden_size: 32, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48,
    attention_bias: true, mlp_bias: true, tie_word_embeddings: false, rope_interleaved: true,
  },
  'phi3: partial rotary (head dim 12, 3 pairs), tied embeddings': {
    model_type: 'phi3', hidden_size: 24, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 40,
    partial_rotary_factor: 0.5, tie_word_embeddings: true,
  },
  'qwen2: head dim 6 and hidden 18 (not multiples of 4), biases, MHA': {
    model_type: 'qwen2', hidden_size: 18, num_attention_heads: 3, num_key_value_heads: 3, intermediate_size: 22, tie_word_embeddings: true,
  },
};

/** A weight store of seeded values in the shapes `readDecoderWeights` asks for. */
function randomStore(config: ModelConfig): WeightStore {
  let seed = 1;
  const fill = (n: number, scale: number, offset = 0) => Float32Array.from({ length: n }, () => offset + scale * Math.sin((seed += 1.618) * 12.9898));
  const tensors = new Map<string, Float32Array>();
  const { hiddenSize: H, intermediateSize: I, numHeads, numKvHeads, headDim, vocabSize: V } = config;
  const q = numHeads * headDim;
  const kv = numKvHeads * headDim;
  const put = (name: string, n: number, scale = 0.3, offset = 0) => tensors.set(name, fill(n, scale, offset));
  put('model.embed_tokens.weight', V * H, 1);
  put('lm_head.weight', V * H, 0.5);
  put('model.norm.weight', H, 0.1, 1);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, H, 0.1, 1);
    put(`${p}.post_attention_layernorm.weight`, H, 0.1, 1);
    put(`${p}.self_attn.qkv_proj.weight`, (q + 2 * kv) * H);
    for (const [n, d] of [['q', q], ['k', kv], ['v', kv]] as const) {
      put(`${p}.self_attn.${n}_proj.weight`, d * H);
      put(`${p}.self_attn.${n}_proj.bias`, d, 0.2);
    }
    put(`${p}.self_attn.o_proj.weight`, H * q);
    put(`${p}.mlp.gate_up_proj.weight`, 2 * I * H);
    for (const n of ['gate', 'up']) {
      put(`${p}.mlp.${n}_proj.weight`, I * H);
      put(`${p}.mlp.${n}_proj.bias`, I, 0.2);
    }
    put(`${p}.mlp.down_proj.weight`, H * I);
    put(`${p}.mlp.down_proj.bias`, H, 0.2);
  }
  const get = (name: string) => {
    const t = tensors.get(name);
    if (!t) throw new WeightsError('missing-tensor', `no tensor ${name}`, { tensor: name });
    return t;
  };
  return {
    names: [...tensors.keys()],
    has: (name) => tensors.has(name),
    info: (name) => ({ name, dtype: 'F32', shape: [get(name).length] }),
    get: (name) => get(name),
    close: async () => undefined,
  };
}

let device: GPUDevice;
beforeAll(async () => {
  ({ device } = await requestNodeGpuDevice({ adapter: 'software' }));
});
afterAll(() => device?.destroy());

describe('WebGPU backend on model variants', () => {
  for (const [label, json] of Object.entries(variants)) {
    for (const kernels of ['register-blocked', 'tiled'] as const) {
      it(`${label} (${kernels}): prefill and decode logits equal the reference backend's`, async () => {
        const config = parseModelConfig({
          vocab_size: 50, num_hidden_layers: 2, rms_norm_eps: 1e-5, max_position_embeddings: 256, rope_theta: 10000, ...json,
        });
        const store = randomStore(config);
        const gpu = await WebGpuBackend.create(config, store, { device, kernels });
        const ref = new ReferenceBackend(config, store);
        const regime = createRopeSchedule(config.rope).regimeFor(16);
        const caches = [gpu.createCache(), ref.createCache()] as const;
        try {
          const steps = [[3, 14, 15, 9, 26, 5, 35, 8, 9], [7], [31]];
          for (const tokens of steps) {
            const [mine, theirs] = await Promise.all(
              ([gpu, ref] as const).map((b, i) => {
                const cache = caches[i]!;
                const positions = tokens.map((_, k) => cache.length + k);
                return b.forward({ rows: [{ tokens, positions, cache, regime, logits: tokens.length }] });
              }),
            );
            const want = theirs!.rows[0]!.data;
            expect(Math.max(...want) - Math.min(...want), 'logits spread (a real comparison)').toBeGreaterThan(0.5);
            expect(maxAbsDiff(mine!.rows[0]!.data, want), `${tokens.length} tokens`).toBeLessThanOrEqual(1e-4);
          }
        } finally {
          caches.forEach((c) => c.dispose());
          await gpu.dispose();
          await ref.dispose();
        }
      });
    }
  }
});
