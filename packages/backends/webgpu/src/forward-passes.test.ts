import { BackendError, parseModelConfig } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { passLimits, planPasses } from './forward-passes.js';

const phi3Mini = parseModelConfig({
  model_type: 'phi3', hidden_size: 3072, intermediate_size: 8192, num_attention_heads: 32, num_key_value_heads: 32,
  num_hidden_layers: 2, vocab_size: 32064, rms_norm_eps: 1e-5, max_position_embeddings: 4096, rope_theta: 10000,
});

describe('passLimits', () => {
  it('holds as many tokens as the widest activation (gate_up) allows, and logits rows of the vocabulary', () => {
    // gate_up: 2 × 8192 floats = 64 KiB a token; logits: 32064 floats a row.
    expect(passLimits(phi3Mini, 128 * 2 ** 20)).toEqual({ tokens: 2048, logitRows: 1046 });
  });

  it('refuses a binding smaller than one token of an activation, naming it and both sizes', () => {
    expect(() => passLimits(phi3Mini, 65535)).toThrow(BackendError);
    expect(() => passLimits(phi3Mini, 65535)).toThrow(/gate_up projection of one token is 65536 bytes.*65535 bytes/);
  });
});

describe('planPasses', () => {
  const limits = { tokens: 4, logitRows: 3 };
  const describePasses = (rows: { tokens: number; logits: number }[]) =>
    planPasses(rows, limits).map((p) => p.pieces.map((x) => `r${x.row}:${x.from}+${x.count}@${x.start}/${x.logits}`).join(' '));

  it('is one pass when everything fits', () => {
    expect(describePasses([{ tokens: 2, logits: 1 }, { tokens: 1, logits: 1 }])).toEqual(['r0:0+2@0/1 r1:0+1@2/1']);
  });

  it('cuts rows across passes at the token limit, each piece with its own logits rows', () => {
    // 10 tokens, logits of the last 2; then a decode row.
    expect(describePasses([{ tokens: 10, logits: 2 }, { tokens: 1, logits: 1 }])).toEqual(['r0:0+4@0/0', 'r0:4+4@0/0', 'r0:8+2@0/2 r1:0+1@2/1']);
  });

  it('closes a pass at the logits limit too', () => {
    // Every position's logits: 3 rows a pass, though 4 tokens would fit.
    const passes = planPasses([{ tokens: 7, logits: 7 }], limits);
    expect(passes.map((p) => [p.tokens, p.logitRows])).toEqual([[3, 3], [3, 3], [1, 1]]);
    // Logits of the last 4: the first piece takes tokens without logits up to the limit.
    expect(describePasses([{ tokens: 7, logits: 4 }])).toEqual(['r0:0+4@0/1', 'r0:4+3@0/3']);
  });
});
