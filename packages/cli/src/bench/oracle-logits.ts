import type { Backend, RopeSchedule } from '@ropeswitch/core';

/**
 * The no-cache oracle at the given steps of a teacher-forced sequence (`ids` = prompt + stream):
 * the logits step i scores come from a forward over its whole prefix (`promptTokens + i` tokens),
 * without cache, under the regime of that length.
 *
 * Steps whose lengths share a regime (every step past L, for LongRoPE) share one forward over the
 * longest of their prefixes, with logits for every position needed: attention is causal, so the
 * logits at position p are those of a forward over tokens 0..p. Returns step → `[vocab]` logits.
 */
export async function oracleLogits(
  backend: Backend,
  schedule: RopeSchedule,
  ids: readonly number[],
  promptTokens: number,
  steps: readonly number[],
): Promise<Map<number, Float32Array>> {
  const vocab = backend.config.vocabSize;
  const groups = new Map<string, number[]>();
  for (const step of steps) {
    const id = schedule.regimeFor(promptTokens + step).id;
    groups.set(id, [...(groups.get(id) ?? []), step]);
  }
  const out = new Map<number, Float32Array>();
  for (const members of groups.values()) {
    const first = Math.min(...members);
    const last = Math.max(...members);
    const length = promptTokens + last;
    if (length > ids.length) throw new Error(`oracle: step ${last} needs ${length} tokens, the sequence has ${ids.length}`);
    const cache = backend.createCache();
    try {
      const tokens = ids.slice(0, length);
      const positions = Int32Array.from({ length }, (_, i) => i);
      const count = last - first + 1;
      const result = await backend.forward({ rows: [{ tokens, positions, cache, regime: schedule.regimeFor(length), logits: count }] });
      const data = result.rows[0]!.data;
      // Row k of the result is position length − count + k, i.e. step first + k.
      for (const step of members) out.set(step, data.slice((step - first) * vocab, (step - first + 1) * vocab));
    } finally {
      cache.dispose();
    }
  }
  return out;
}
