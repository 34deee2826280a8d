/**
 * Backend wrappers for fault-injection and abort tests, placed under a policy chain
 * (`wrapBackend(injector, policy)`): they count every forward call the chain makes and, on the call
 * they are told, fail it in one of several ways or abort the request's signal at a chosen point of
 * the inner forward. Plus the checks every fault test makes: the typed error in a cause chain, and
 * what a cache looked like.
 */
import {
  type Backend,
  type ForwardRequest,
  type ForwardResult,
  type KvCache,
  type RopeRegime,
  RopeswitchError,
} from '@ropeswitch/core';

/**
 * How a faulty call fails:
 * - `throw`: `forward` throws synchronously (not a rejected promise), before the inner backend runs;
 * - `reject`: it returns a rejected promise (an `Error`); `reject-value`: rejected with a plain string;
 * - `few-rows`: the inner backend runs (and commits to every cache) but one result row is missing;
 * - `bad-length`: the inner backend runs, then a row's logits come back one value short;
 * - `nan`: the inner backend runs, then one logit of a row that asked for logits is NaN (or ±Infinity).
 */
export const FAULT_KINDS = ['throw', 'reject', 'reject-value', 'few-rows', 'bad-length', 'nan'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What the injector did on the faulty call. */
export interface InjectedFault {
  readonly kind: FaultKind;
  readonly call: number;
  /** For `nan`: the request row whose logits were poisoned, and its cache's length after the call. */
  readonly row?: number;
  readonly lengthAfter?: number;
}

export interface FaultInjector extends Backend {
  readonly inner: Backend;
  /** Forward calls seen so far, the failed one included. */
  readonly calls: number;
  /** Arms the injector: call number `call` (counted from 0 over the injector's life) fails as `kind`. */
  arm(call: number, kind: FaultKind): void;
  /** The fault injected since the last `arm`, if the armed call came. */
  readonly injected: InjectedFault | undefined;
}

/** The error an injected `throw` / `reject` carries: a plain `Error`, which no library code produced. */
export class InjectedError extends Error {
  override readonly name = 'InjectedError';
}

/** Wraps `inner` with a {@link FaultInjector}; `rerotateKeys` and `prepareRerotation` pass through. */
export function faultInjector(inner: Backend): FaultInjector {
  let calls = 0;
  let armed: { call: number; kind: FaultKind } | undefined;
  let injected: InjectedFault | undefined;
  const backend: FaultInjector = {
    name: `faults(${inner.name})`,
    config: inner.config,
    capabilities: inner.capabilities,
    inner,
    get calls() {
      return calls;
    },
    get injected() {
      return injected;
    },
    arm(call, kind) {
      armed = { call, kind };
      injected = undefined;
    },
    createCache: () => inner.createCache(),
    // Not `async`: a `throw` fault must leave this function synchronously.
    forward(request: ForwardRequest): Promise<ForwardResult> {
      const call = calls++;
      if (!armed || armed.call !== call) return inner.forward(request);
      const { kind } = armed;
      armed = undefined;
      switch (kind) {
        case 'throw':
          injected = { kind, call };
          throw new InjectedError(`injected: call ${call} throws`);
        case 'reject':
          injected = { kind, call };
          return Promise.reject(new InjectedError(`injected: call ${call} rejects`));
        case 'reject-value':
          injected = { kind, call };
          return Promise.reject(`injected: call ${call} rejects with a string`);
        default:
          return inner.forward(request).then((result) => corrupt(request, result, kind, call, (f) => (injected = f)));
      }
    },
    dispose: () => inner.dispose(),
  };
  if (inner.rerotateKeys) backend.rerotateKeys = (cache: KvCache, to: RopeRegime) => inner.rerotateKeys!(cache, to);
  if (inner.prepareRerotation) backend.prepareRerotation = (from: RopeRegime, to: RopeRegime, n: number) => inner.prepareRerotation!(from, to, n);
  return backend;
}

/** A result the inner backend computed (and committed), spoiled after the fact. */
function corrupt(request: ForwardRequest, result: ForwardResult, kind: FaultKind, call: number, report: (f: InjectedFault) => void): ForwardResult {
  const rows = result.rows.slice();
  const withLogits = request.rows.findIndex((r) => (r.logits ?? 1) > 0);
  if (kind === 'few-rows' || withLogits < 0) {
    report({ kind: 'few-rows', call });
    return { rows: rows.slice(0, -1) };
  }
  const row = rows[withLogits]!;
  if (kind === 'bad-length') {
    report({ kind, call });
    rows[withLogits] = { ...row, data: row.data.slice(0, -1) };
    return { rows };
  }
  const data = row.data.slice();
  data[call % data.length] = [NaN, Infinity, -Infinity][call % 3]!;
  rows[withLogits] = { ...row, data };
  report({ kind, call, row: withLogits, lengthAfter: request.rows[withLogits]!.cache.length });
  return { rows };
}

// ---------------------------------------------------------------------------------------------
// Aborts

/** Where an {@link AbortingBackend} aborts: on forward call `call`, at the inner backend's `check`-th signal check. */
export interface AbortPoint {
  readonly call: number;
  /**
   * 0: right before the inner backend is called (its first check throws); k ≥ 1: inside the inner
   * forward, at its k-th `throwIfAborted()` (the reference checks once per layer and once after the
   * last), so `numLayers` layers of work can be done and thrown away.
   */
  readonly check: number;
}

export interface AbortingBackend extends Backend {
  readonly inner: Backend;
  /** Forward calls seen so far. */
  readonly calls: number;
  /** Calls that started after the abort fired (the one in flight when it fired is not counted). */
  readonly callsAfterAbort: number;
  /** Whether the abort has fired. */
  readonly fired: boolean;
  /** Arms the next abort: `controller` is aborted with `reason` at `point`. */
  arm(point: AbortPoint, controller: AbortController, reason: unknown): void;
  /** Aborts `controller` now (from a callback between forwards) and starts counting later calls. */
  abortNow(controller: AbortController, reason: unknown): void;
}

/**
 * Wraps `inner`, aborting a controller at an {@link AbortPoint}. Inside the inner forward the
 * request's signal is replaced by one that counts `throwIfAborted()` calls and aborts the real
 * controller at the chosen one, so the abort lands between two layers of a forward in flight.
 */
export function abortingBackend(inner: Backend): AbortingBackend {
  let calls = 0;
  let callsAfterAbort = 0;
  let fired = false;
  let armed: { point: AbortPoint; controller: AbortController; reason: unknown } | undefined;
  const fire = (controller: AbortController, reason: unknown) => {
    fired = true;
    controller.abort(reason);
  };
  const backend: AbortingBackend = {
    name: `aborting(${inner.name})`,
    config: inner.config,
    capabilities: inner.capabilities,
    inner,
    get calls() {
      return calls;
    },
    get callsAfterAbort() {
      return callsAfterAbort;
    },
    get fired() {
      return fired;
    },
    arm(point, controller, reason) {
      armed = { point, controller, reason };
      fired = false;
      callsAfterAbort = 0;
    },
    abortNow(controller, reason) {
      armed = undefined;
      callsAfterAbort = 0;
      fire(controller, reason);
    },
    createCache: () => inner.createCache(),
    async forward(request: ForwardRequest): Promise<ForwardResult> {
      const call = calls++;
      if (fired) callsAfterAbort++;
      const a = armed;
      if (!a || a.point.call !== call) return inner.forward(request);
      armed = undefined;
      if (a.point.check === 0) {
        fire(a.controller, a.reason);
        return inner.forward(request);
      }
      const real = a.controller.signal;
      let checks = 0;
      const counting = {
        get aborted() {
          return real.aborted;
        },
        get reason() {
          return real.reason as unknown;
        },
        throwIfAborted() {
          if (++checks === a.point.check && !real.aborted) fire(a.controller, a.reason);
          real.throwIfAborted();
        },
      } as unknown as AbortSignal;
      return inner.forward({ ...request, signal: counting });
    },
    dispose: () => inner.dispose(),
  };
  if (inner.rerotateKeys) backend.rerotateKeys = (cache: KvCache, to: RopeRegime) => inner.rerotateKeys!(cache, to);
  if (inner.prepareRerotation) backend.prepareRerotation = (from: RopeRegime, to: RopeRegime, n: number) => inner.prepareRerotation!(from, to, n);
  return backend;
}

// ---------------------------------------------------------------------------------------------
// Checks

/** `error` and its causes, outermost first. */
export function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e !== undefined && chain.length < 10; e = e instanceof Error ? e.cause : undefined) chain.push(e);
  return chain;
}

/** The first error in `error`'s cause chain with `code`, if any. */
export function findCode(error: unknown, code: string): RopeswitchError | undefined {
  return causeChain(error).find((e): e is RopeswitchError => e instanceof RopeswitchError && e.code === code);
}
