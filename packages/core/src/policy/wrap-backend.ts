import type { Backend } from '../backend/backend.js';
import { validateForwardRequest } from '../backend/validate-request.js';
import type { KvCache } from '../cache/kv-cache.js';
import { PolicyError } from '../errors.js';
import { modelSchedule } from '../rope/create-schedule.js';
import type { RopeRegime } from '../rope/regime.js';
import type { RopeSchedule } from '../rope/schedule.js';
import { backendCall } from './backend-call.js';
import type { CachePolicy, PolicyRequest, PolicyResult, StaleKeyHandling } from './cache-policy.js';
import { type ChainLink, checkedPolicies, runChain, staleKeysOf } from './compose-policies.js';

/**
 * Something that keeps state per sequence and must hear when one ends. Every {@link PolicyBackend}
 * is one (its policies keep shadow caches and mirrors); a backend may be one too, and then the
 * wrapper passes the call on after its policies.
 */
export interface SequenceReleaser {
  /** The sequence owning `cache` ended: forget (and dispose) whatever is kept for it. */
  releaseSequence(cache: KvCache): void;
}

/** What {@link wrapBackend} takes besides the backend and the policies. */
export interface WrapOptions {
  /** The RoPE schedule every policy and every {@link Session} over the wrapper uses (default: the model's, from its config). */
  readonly schedule?: RopeSchedule;
}

/**
 * A backend whose forward calls run through one chain of cache policies: the one owner of a
 * forward step. Still a {@link Backend}, so it goes wherever a backend does; wrapping it again
 * extends its chain.
 */
export interface PolicyBackend extends Backend, SequenceReleaser {
  forward(request: PolicyRequest): Promise<PolicyResult>;
  /** The backend this wrapper was given: a bare one, or a wrapped one whose chain this one extends. */
  readonly inner: Backend;
  /** The bare backend every forward reaches, under the whole chain. */
  readonly base: Backend;
  /** The whole chain, first policy first (an outer wrapper's policies before the inner's). */
  readonly policies: readonly CachePolicy[];
  /** The schedule every policy of the chain sees, and every session over this backend rotates by. */
  readonly schedule: RopeSchedule;
  /** What the chain does with cached keys of another regime: `'keep'` when no policy says (a stale cache). */
  readonly staleKeys: StaleKeyHandling | 'keep';
}

/** The wrappers {@link wrapBackend} made, with the links of their chains. */
const chains = new WeakMap<Backend, readonly ChainLink[]>();

/** Whether `backend` came from {@link wrapBackend}. */
export function isPolicyBackend(backend: Backend): backend is PolicyBackend {
  return chains.has(backend);
}

/** The schedule a forward on `backend` is rotated by: a wrapped backend's own, else its model's. */
export function scheduleOf(backend: Backend): RopeSchedule {
  return isPolicyBackend(backend) ? backend.schedule : modelSchedule(backend.config.rope);
}

/**
 * Wraps `backend` so that every forward call runs through `policies`: **the first policy sees the
 * request first; the last sits on the backend**. With no policies the wrapper passes requests
 * through (a stale cache, as HF custom loops get).
 *
 * The wrapper is the one place a forward step is owned: it checks the request
 * (`validateForwardRequest`) before the chain sees it, so a policy that rewrites a row never hides
 * a bad one; holds the one schedule every policy gets; splits requests with more rows than the
 * backend takes (policies may add rows) into consecutive calls; checks what the backend returns
 * (shapes, and a `BackendError` `nan-logits` for a non-finite logit); and crops a failed call's rows
 * back off every cache it touched (see {@link backendCall}). A policy's own error passes as it is
 * (`Session` types it).
 *
 * Wrapping a wrapped backend extends its chain (the new policies run first, each seeing as
 * `backend` what it was wrapped around) and keeps its schedule unless `options.schedule` is given:
 * one chain, one check of each request.
 *
 * ```ts
 * const model = wrapBackend(backend, shadowPrefill());
 * const pinned = wrapBackend({ schedule: mySchedule }, backend, rePrefill());
 * ```
 */
export function wrapBackend(backend: Backend, ...policies: CachePolicy[]): PolicyBackend;
export function wrapBackend(options: WrapOptions, backend: Backend, ...policies: CachePolicy[]): PolicyBackend;
export function wrapBackend(first: Backend | WrapOptions, ...rest: (Backend | CachePolicy)[]): PolicyBackend {
  const given = isBackend(first);
  const options: WrapOptions = given ? {} : first;
  const backend = (given ? first : rest.shift()) as Backend;
  if (backend === undefined || backend === null || !isBackend(backend)) {
    throw new PolicyError('not-a-backend', 'wrapBackend([options,] backend, ...policies): the backend must be a Backend (an object with forward and createCache)');
  }
  const added = checkedPolicies(rest as CachePolicy[]);
  const below = chains.get(backend);
  const base = below ? (backend as PolicyBackend).base : backend;
  const links: readonly ChainLink[] = [...added.map((policy) => ({ policy, backend })), ...(below ?? [])];
  const schedule = options.schedule ?? (below ? (backend as PolicyBackend).schedule : modelSchedule(base.config.rope));
  // The chain may take more rows than the backend: the call at its bottom splits them.
  const unbounded = { ...base.capabilities, maxRows: Infinity };
  const bottom = backendCall(base);
  const policies = Object.freeze(links.map((l) => l.policy));
  const wrapped: PolicyBackend = {
    name: base.name,
    config: base.config,
    capabilities: base.capabilities,
    inner: backend,
    base,
    policies,
    schedule,
    staleKeys: staleKeysOf(policies) ?? 'keep',
    createCache: () => base.createCache(),
    forward: async (request) => {
      validateForwardRequest(base.config, unbounded, request);
      return runChain(links, { request, next: bottom, backend: base, schedule });
    },
    releaseSequence(cache) {
      for (const policy of policies) policy.releaseSequence?.(cache);
      if (isReleaser(base)) base.releaseSequence(cache);
    },
    dispose: () => base.dispose(),
  };
  if (base.rerotateKeys) {
    const rotate = base.rerotateKeys.bind(base);
    wrapped.rerotateKeys = (cache: KvCache, to: RopeRegime) => rotate(cache, to);
    if (base.prepareRerotation) {
      const prepare = base.prepareRerotation.bind(base);
      wrapped.prepareRerotation = (from: RopeRegime, to: RopeRegime, positions: number) => prepare(from, to, positions);
    }
  }
  chains.set(wrapped, links);
  return wrapped;
}

function isBackend(x: Backend | WrapOptions): x is Backend {
  return typeof (x as Partial<Backend>).forward === 'function' && typeof (x as Partial<Backend>).createCache === 'function';
}

function isReleaser(backend: Backend): backend is Backend & SequenceReleaser {
  return typeof (backend as Partial<SequenceReleaser>).releaseSequence === 'function';
}
