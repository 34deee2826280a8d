import { createRopeSchedule, loadCheckpoint, parseModelConfig, positionLimit } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { MODEL_LIKES, publishedConfig } from '../packages/cli/src/random-models/make-model.js';

// The published config.json files of the Phi-3 family (packages/cli/assets/configs/, see its README
// for where each was taken from) parse into the shapes and LongRoPE schedules users run.
describe('the published Phi-3-family configs', () => {
  for (const like of MODEL_LIKES) {
    it(`${like}: parses, with LongRoPE switching strictly after L = 4096`, () => {
      const json = publishedConfig(like);
      const config = parseModelConfig(json, like);
      const scaling = json['rope_scaling'] as { long_factor: number[]; short_factor: number[] };
      expect(config.family).toBe('phi3');
      expect(config.hiddenSize).toBe(json['hidden_size']);
      expect(config.numLayers).toBe(json['num_hidden_layers']);
      expect(config.vocabSize).toBe(json['vocab_size']);
      expect(config.headDim * config.numHeads).toBe(config.hiddenSize);
      expect(config.rope.rotaryDim).toBe(2 * scaling.long_factor.length);
      expect(config.tieWordEmbeddings).toBe(json['tie_word_embeddings']);
      expect(positionLimit(config)).toBe(json['max_position_embeddings']);
      const schedule = createRopeSchedule(config.rope);
      expect(schedule.threshold).toBe(4096);
      const short = schedule.regimeFor(4096);
      const long = schedule.regimeFor(4097);
      expect(short.id).not.toBe(long.id);
      // ω_i = 1 / (λ_i · θ^(2i/r)), λ the regime's factors.
      const r = config.rope.rotaryDim;
      scaling.long_factor.forEach((f, i) => expect(long.invFreq[i]).toBeCloseTo(1 / (f * 10000 ** ((2 * i) / r)), 6));
      scaling.short_factor.forEach((f, i) => expect(short.invFreq[i]).toBeCloseTo(1 / (f * 10000 ** ((2 * i) / r)), 6));
      // M/L = 32: m = sqrt(1 + ln 32 / ln 4096).
      expect(long.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 6);
    });
  }

  it('Phi-4-mini: grouped-query attention, partial rotary 0.75, tied embeddings', () => {
    const config = parseModelConfig(publishedConfig('phi-4-mini'), 'phi-4-mini');
    expect([config.numHeads, config.numKvHeads, config.headDim, config.rope.rotaryDim, config.tieWordEmbeddings]).toEqual([24, 8, 128, 96, true]);
  });

  it('a folder with config.json and weights but no tokenizer loads, prompts being token ids', async () => {
    const checkpoint = await loadCheckpoint(new URL('../packages/cli/assets/copy-longrope/', import.meta.url).pathname);
    expect(checkpoint.tokenizer).toBeUndefined();
    await checkpoint.weights.close();
  });
});
