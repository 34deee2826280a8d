import { PolicyError, Session, parseModelConfig, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { type TokenShare, costModelOf, modelledTokenCost, paceByCost, prefersCostPacing, withoutLogitsShare } from './shadow-pacing.js';
import { shadowPrefill } from './shadow-prefill.js';
import { TINY_BASE_JSON, TINY_LONGROPE_JSON, oracleDiffs, randomIds, recording, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

// Pacing a shadow copy by cost: the cost model (modelled from the shapes, then measured), the
// choice 'auto' makes, and the schedule: every forward of the window modelled to cost the same,
// the decode row included, the copy complete by the crossing; and the policy still exact with it.

const models = useTinyModels();

/** A Phi-3 LongRoPE config of the given shape at Phi-3's L = 4096. */
function phi3Like(shape: { hidden_size: number; intermediate_size: number; num_attention_heads: number; num_key_value_heads: number; head_dim: number }) {
  const half = shape.head_dim / 2;
  return parseModelConfig({
    ...TINY_BASE_JSON,
    ...shape,
    model_type: 'phi3',
    original_max_position_embeddings: 4096,
    max_position_embeddings: 131072,
    rope_scaling: { type: 'longrope', short_factor: Array(half).fill(1), long_factor: Array(half).fill(4) },
  });
}

/** `builtin`'s shape (make-tiny's defaults). */
const BUILTIN = phi3Like({ hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16 });
/** Phi-3-mini's shape (the ratio does not depend on the layer count). */
const PHI3_MINI = phi3Like({ hidden_size: 3072, intermediate_size: 8192, num_attention_heads: 32, num_key_value_heads: 32, head_dim: 96 });

/** Every forward of a far window by cost pacing (prompt L/2, one token a step): chunk sizes and modelled step costs. */
function simulate(a: number, threshold: number, prompt: number, pace: (length: number, shadow: number) => number, share: TokenShare = { weights: 1, attention: 1 }) {
  const chunks: number[] = [];
  const costs: number[] = [];
  let shadow = 0;
  for (let length = prompt + 1; length <= threshold; length++) {
    // The copy holds at most the sequence (its cached tokens and this forward's).
    const n = Math.min(threshold - shadow, length - shadow, pace(length, shadow));
    // The decode row (a + length) and n shadow tokens from position `shadow` (a + p + 1 each, at their share).
    costs.push(a + length + n * (share.weights * a + share.attention * shadow) + (share.attention * n * (n + 1)) / 2);
    chunks.push(n);
    shadow += n;
  }
  return { chunks, costs, shadow };
}

describe('shadow pacing by cost', () => {
  it('models a token’s weights against one key’s attention: 288 keys for builtin, 120 for the tiny test model, 18432 for Phi-3-mini', () => {
    // builtin: qkv 64·128 + o 64·64 + gate_up 64·256 + down 128·64 = 36864 multiply-adds per layer; a key: 2·4·16 = 128.
    expect(modelledTokenCost(BUILTIN)).toBe(288);
    expect(modelledTokenCost(parseModelConfig(TINY_LONGROPE_JSON))).toBe(120);
    expect(modelledTokenCost(PHI3_MINI)).toBe(18432);
  });

  it("'auto' paces by cost where attention dominates at the threshold (builtin), by token count elsewhere", () => {
    expect(prefersCostPacing(costModelOf(BUILTIN), 4096)).toBe(true);
    expect(prefersCostPacing(costModelOf(parseModelConfig(TINY_LONGROPE_JSON)), 16)).toBe(false);
    expect(prefersCostPacing(costModelOf(PHI3_MINI), 4096)).toBe(false);
  });

  it('spreads the copy so every forward costs about the same, front-loads it, and completes it by the crossing', () => {
    const model = costModelOf(BUILTIN);
    const a = model.tokenCost;
    const byCost = simulate(a, 4096, 2048, (length, shadow) => paceByCost(model, length, 1, shadow, 4096));
    const byTokens = simulate(a, 4096, 2048, (length, shadow) => Math.max(1, Math.ceil((4096 - shadow) / (4096 - length + 1))));
    expect(byCost.shadow).toBe(4096);
    expect(byTokens.shadow).toBe(4096);
    // No forward below the last one's (decode row and the copy's token, both over L keys), none far
    // above: a token near the threshold costs a quarter of a forward, so chunks of 2 and 3 alternate.
    const last = 2 * (a + 4096);
    expect(Math.max(...byCost.costs) / last).toBeLessThan(1.15);
    expect(byCost.chunks[0]!).toBeGreaterThan(15);
    expect(byCost.chunks.at(-1)!).toBe(1);
    // Against the even token share, whose last steps carry its dearest tokens: ≈ 24 % lower at the peak.
    expect(Math.max(...byCost.costs)).toBeLessThan(0.8 * Math.max(...byTokens.costs));
  });

  it('on a backend that prunes the last layer, plans a token without logits at its share: builtin’s slowest forward ≈ 25 % lower', () => {
    // builtin: a layer is 36864 multiply-adds a token, its QKV projection 8192 of them; 2 layers.
    const share = withoutLogitsShare(BUILTIN, { prunesLastLayer: true });
    expect(share.attention).toBe(0.5);
    expect(share.weights).toBeCloseTo((1 + 8192 / 36864) / 2, 12);
    expect(withoutLogitsShare(BUILTIN, {})).toEqual({ weights: 1, attention: 1 });
    expect(withoutLogitsShare(BUILTIN)).toEqual({ weights: 1, attention: 1 });
    const pruned = costModelOf(BUILTIN, { prunesLastLayer: true });
    const plain = costModelOf(BUILTIN);
    expect(pruned.withoutLogits).toEqual(share);
    const a = pruned.tokenCost;
    const run = simulate(a, 4096, 2048, (length, shadow) => paceByCost(pruned, length, 1, shadow, 4096), share);
    const before = simulate(a, 4096, 2048, (length, shadow) => paceByCost(plain, length, 1, shadow, 4096));
    expect(run.shadow).toBe(4096);
    // Its floor: the decode row and the copy's token at its share, both over L keys.
    const last = a + 4096 + share.weights * a + share.attention * 4096;
    expect(Math.max(...run.costs) / last).toBeLessThan(1.15);
    expect(Math.max(...run.costs)).toBeLessThan(0.8 * Math.max(...before.costs));
  });

  it('counts a row’s tokens without logits at their share when it fits the measured cost', () => {
    // The same timed forwards seen by a pruning model and a plain one: time = 0.05 ms + 0.002 ms a
    // token + 1e-5 ms a key, with the shadow chunk's tokens and keys at the pruning share.
    const share = withoutLogitsShare(BUILTIN, { prunesLastLayer: true });
    const model = costModelOf(BUILTIN, { prunesLastLayer: true });
    const row = (n: number, past: number, logits: number) => ({ tokens: Array(n).fill(1), positions: Array(n).fill(0), cache: { length: past }, regime: {}, logits }) as never;
    for (let i = 0; i < 40; i++) {
      const n = 1 + (i % 20);
      const past = 2000 + i;
      const chunkKeys = n * (i * 3) + (n * (n + 1)) / 2;
      const ms = 0.05 + 0.002 * (1 + share.weights * n) + 1e-5 * (past + 1 + share.attention * chunkKeys);
      model.observe([row(1, past, 1)], [{ extra: [row(n, i * 3, 0)] }], ms);
    }
    expect(model.tokenCost).toBeCloseTo(200, 6);
  });

  it('measures the token cost from timed forwards (a least-squares fit), within 8× of the modelled one', () => {
    const model = costModelOf(BUILTIN);
    const cache = { length: 100 };
    const row = (n: number, past: number) => ({ tokens: Array(n).fill(1), positions: Array(n).fill(0), cache: { ...cache, length: past }, regime: {}, logits: 0 }) as never;
    // Forwards of a decode row and a chunk of 1–20 tokens: time = 0.05 ms + 0.002 ms per token + 1e-5 ms per key (b / g = 200).
    for (let i = 0; i < 40; i++) {
      const n = 1 + (i % 20);
      const past = 2000 + i;
      const keys = past + 1 + n * (i * 3) + (n * (n + 1)) / 2;
      model.observe([row(1, past)], [{ extra: [row(n, i * 3)] }], 0.05 + 0.002 * (1 + n) + 1e-5 * keys);
    }
    expect(model.samples).toBe(40);
    expect(model.tokenCost).toBeCloseTo(200, 6);
    // A fit far from the model (a paused machine) is held within 8×.
    const wild = costModelOf(BUILTIN);
    for (let i = 0; i < 40; i++) wild.observe([row(1 + (i % 7), 10 * i)], [], 5 + (i % 7) * 50);
    expect(wild.tokenCost).toBeLessThanOrEqual(8 * 288);
    expect(wild.tokenCost).toBeGreaterThanOrEqual(288 / 8);
  });

  it("shadowPrefill({ pacing: 'cost' }) stays exact and within chunk + 1 tokens a forward; 'tokens' is the even share", async () => {
    for (const pacing of ['cost', 'tokens'] as const) {
      const ids = randomIds(91, 20, models.longrope.vocab);
      const rec = recording(models.longrope.backend);
      const session = new Session(wrapBackend(rec, shadowPrefill({ pacing, chunk: 4 })));
      const steps = await teacherForce(session, ids, 8, 20);
      const diffs = await oracleDiffs(models.longrope, ids, steps);
      diffs.forEach((d, i) => expect(d, `${pacing}, S = ${steps[i]!.length}`).toBeLessThanOrEqual(1e-4));
      for (const call of rec.calls.slice(1)) expect(call.reduce((n, r) => n + r.tokens.length, 0)).toBeLessThanOrEqual(5);
      const shadow = rec.calls.map((c) => c.filter((r) => r.cache !== session.cache && r.logits === 0).reduce((n, r) => n + r.tokens.length, 0));
      if (pacing === 'tokens') expect(shadow.slice(1, 9)).toEqual([2, 2, 2, 2, 2, 2, 2, 2]);
      // By cost, the first steps take more (their tokens attend to fewer keys), the last fewer.
      else expect(shadow[1]!).toBeGreaterThanOrEqual(shadow[8]!);
      session.dispose();
    }
    expect(() => shadowPrefill({ pacing: 'fastest' as never })).toThrow(PolicyError);
  });
});
