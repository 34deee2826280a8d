import { type Backend, Session, wrapBackend } from '@ropeswitch/core';
import { stale } from '@ropeswitch/policies';
import { median } from './statistics.js';

/** Decode step time through `wrapBackend(backend, stale())` against the bare backend. */
export interface MiddlewareOverhead {
  readonly bareMs: number;
  readonly wrappedMs: number;
  /** wrappedMs / bareMs − 1. */
  readonly overhead: number;
  /** Steps timed on each side. */
  readonly steps: number;
  readonly cacheTokens: number;
}

const ROUNDS = 10;
const STEPS_PER_ROUND = 20;

/**
 * The cost of the policy middleware on steps that cross nothing: two sessions prefilled with the
 * same prompt, one on the bare backend and one through the `stale` policy chain, decode the same
 * tokens in alternating blocks (so drift in machine speed hits both alike) while their lengths stay
 * at most `threshold`, at most `maxSteps` a side (default 200). Medians of the per-step times are compared.
 */
export async function measureMiddlewareOverhead(
  backend: Backend,
  prompt: readonly number[],
  threshold: number,
  tokens: readonly number[],
  maxSteps = ROUNDS * STEPS_PER_ROUND,
): Promise<MiddlewareOverhead> {
  const room = Math.max(0, Math.min(threshold - prompt.length, maxSteps));
  const perRound = Math.max(1, Math.min(STEPS_PER_ROUND, Math.floor(room / ROUNDS)));
  const rounds = Math.min(ROUNDS, Math.floor(room / perRound));
  const bare = new Session(backend);
  const wrapped = new Session(wrapBackend(backend, stale()));
  try {
    const planned = prompt.length + rounds * perRound;
    await bare.prefill(prompt, { plannedLength: planned });
    await wrapped.prefill(prompt, { plannedLength: planned });
    const bareMs: number[] = [];
    const wrappedMs: number[] = [];
    let next = 0;
    const block = async (session: Session, times: number[], from: number) => {
      for (let i = 0; i < perRound; i++) {
        const token = tokens[(from + i) % tokens.length]!;
        const t0 = performance.now();
        await session.forward([token]);
        times.push(performance.now() - t0);
      }
    };
    for (let r = 0; r < rounds; r++) {
      // Alternate which side goes first, so neither always runs on a warmer machine.
      const order: [Session, number[]][] = r % 2 === 0 ? [[bare, bareMs], [wrapped, wrappedMs]] : [[wrapped, wrappedMs], [bare, bareMs]];
      for (const [session, times] of order) await block(session, times, next);
      next += perRound;
    }
    const b = median(bareMs);
    const w = median(wrappedMs);
    return { bareMs: b, wrappedMs: w, overhead: w / b - 1, steps: bareMs.length, cacheTokens: prompt.length };
  } finally {
    bare.dispose();
    wrapped.dispose();
  }
}
