import type { Backend, CachePolicy, KvCache, PolicyRequest, PolicyResult, PolicyRow, RopeSchedule, WrapForwardOptions } from '@ropeswitch/core';
import { PolicyError, composePolicies } from '@ropeswitch/core';

/** Decides, per row and per forward, which branch of {@link when} serves the row's sequence. */
export type PolicyCondition = (row: PolicyRow, context: { readonly backend: Backend; readonly schedule: RopeSchedule }) => boolean;

/**
 * Routes each row by `condition`: rows for which it holds go through `then`, the others through
 * `otherwise` (default: straight on to the rest of the chain). A branch may be a policy or a list
 * of policies run in order. Like tRPC's `splitLink`, but per sequence: when a request's rows go
 * both ways, both branches run side by side and their requests are merged into one call to the
 * rest of the chain, so the rows still share one pass over the weights.
 *
 * ```ts
 * // Dynamic NTK changes regime at every step: recompute. LongRoPE: shadow the crossing, and
 * // if the shadow is late, rerotate now and let the shadow swap in the exact cache when ready.
 * const policy = when(
 *   (_row, { schedule }) => schedule.changesEveryStep,
 *   rePrefill(),
 *   [shadowPrefill({ late: 'pass' }), rerotate()],
 * );
 * ```
 */
export function when(condition: PolicyCondition, then: CachePolicy | readonly CachePolicy[], otherwise?: CachePolicy | readonly CachePolicy[]): CachePolicy {
  if (typeof condition !== 'function') throw new PolicyError('not-a-condition', 'when(): the condition must be a function of (row, { backend, schedule })');
  const branches = [asPolicy(then), otherwise === undefined ? undefined : asPolicy(otherwise)] as const;
  // Exact only if both branches are (an absent branch hands rows on as they are).
  const [a, b] = [branches[0].staleKeys, branches[1]?.staleKeys];
  const staleKeys = a === b ? a : 'approximate';
  return {
    name: `when(${branches[0].name}${branches[1] ? ` | ${branches[1].name}` : ''})`,
    ...(staleKeys ? { staleKeys } : {}),
    wrapForward(options) {
      const { request } = options;
      const sides = request.rows.map((row) => (condition(row, options) ? 0 : 1));
      const groups = [0, 1].map((side) => sides.flatMap((s, i) => (s === side ? [i] : [])));
      const only = groups.findIndex((g) => g.length === request.rows.length);
      if (only >= 0) return runBranch(branches[only], options, request);
      return runMerged(groups.map((indices, side) => ({ policy: branches[side], indices })), options);
    },
    releaseSequence(cache: KvCache) {
      branches[0].releaseSequence?.(cache);
      branches[1]?.releaseSequence?.(cache);
    },
  };
}

function asPolicy(p: CachePolicy | readonly CachePolicy[]): CachePolicy {
  return Array.isArray(p) ? composePolicies(...(p as readonly CachePolicy[])) : composePolicies(p as CachePolicy);
}

function runBranch(policy: CachePolicy | undefined, options: WrapForwardOptions, request: PolicyRequest): Promise<PolicyResult> {
  return policy?.wrapForward ? policy.wrapForward({ ...options, request }) : options.next(request);
}

interface Pending {
  request: PolicyRequest;
  resolve: (r: PolicyResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Runs every branch on its rows; each branch's call to `next` waits until every branch has either
 * called `next` or finished, then all waiting requests go down as one. A branch that fails before
 * its `next` fails the whole forward before anything runs, so no row's cache moves.
 */
async function runMerged(groups: { policy: CachePolicy | undefined; indices: number[] }[], options: WrapForwardOptions): Promise<PolicyResult> {
  const active = groups.filter((g) => g.indices.length > 0);
  const state: ('running' | 'waiting' | 'done')[] = active.map(() => 'running');
  const pending = new Map<number, Pending>();
  let failure: { error: unknown } | undefined;

  const flush = (): void => {
    if (state.includes('running') || pending.size === 0) return;
    const waiting = [...pending.entries()];
    pending.clear();
    if (failure) {
      for (const [, p] of waiting) p.reject(failure.error);
      return;
    }
    const rows = waiting.flatMap(([, p]) => p.request.rows);
    options.next({ ...options.request, rows }).then(
      (result) => {
        let at = 0;
        for (const [b, p] of waiting) {
          const n = p.request.rows.length;
          state[b] = 'running';
          p.resolve({ ...result, rows: result.rows.slice(at, at + n) });
          at += n;
        }
      },
      (error: unknown) => {
        for (const [b, p] of waiting) {
          state[b] = 'running';
          p.reject(error);
        }
      },
    );
  };

  const results = await Promise.allSettled(
    active.map(async (group, b) => {
      let called = false;
      const next = (request: PolicyRequest): Promise<PolicyResult> => {
        if (called) return Promise.reject(new PolicyError('next-twice', `a branch of when() called next() twice in one forward`));
        called = true;
        return new Promise<PolicyResult>((resolve, reject) => {
          pending.set(b, { request, resolve, reject });
          state[b] = 'waiting';
          flush();
        });
      };
      const sub: PolicyRequest = { ...options.request, rows: group.indices.map((i) => options.request.rows[i]!) };
      try {
        return group.policy?.wrapForward ? await group.policy.wrapForward({ ...options, request: sub, next }) : await next(sub);
      } catch (error) {
        failure ??= { error };
        throw error;
      } finally {
        state[b] = 'done';
        flush();
      }
    }),
  );
  // The first error a branch threw, not a waiting branch's rejection that it caused.
  if (failure) throw failure.error;
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const rows: PolicyResult['rows'][number][] = new Array(options.request.rows.length);
  results.forEach((r, b) => {
    const value = (r as PromiseFulfilledResult<PolicyResult>).value;
    active[b]!.indices.forEach((i, k) => (rows[i] = value.rows[k]!));
  });
  return { rows };
}
