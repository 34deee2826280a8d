import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, ForwardRequest, ForwardResult } from '../backend/backend.js';
import { SessionError } from '../errors.js';
import { modelSchedule } from '../rope/create-schedule.js';
import type { RopeSchedule } from '../rope/schedule.js';
import { Session } from '../session/session.js';
import { type TinyModel, pinnedSchedule, randomIds, tinyLongRope } from '@ropeswitch/testkit';
import type { CachePolicy, WrapForwardOptions } from './cache-policy.js';
import { isPolicyBackend, scheduleOf, wrapBackend } from './wrap-backend.js';

// One owner of a forward step: the wrapper checks, schedules and calls; Session uses it as it is.

let model: TinyModel;
beforeAll(async () => {
  model = await tinyLongRope();
});

/** A bare backend that hands each forward's call stack (the core modules on it, in call order) to `seen`. */
function stackProbe(inner: Backend, seen: string[][]): Backend {
  return {
    ...inner,
    name: inner.name,
    config: inner.config,
    capabilities: inner.capabilities,
    createCache: () => inner.createCache(),
    forward(request: ForwardRequest): Promise<ForwardResult> {
      seen.push(coreModulesOnStack(new Error().stack ?? ''));
      return inner.forward(request);
    },
    dispose: () => inner.dispose(),
  };
}

/** The core source modules of a stack, caller first, each run of one module counted once. */
function coreModulesOnStack(stack: string): string[] {
  const core = fileURLToPath(new URL('..', import.meta.url));
  const files = stack
    .split('\n')
    .map((line) => /\((?:file:\/\/)?([^():]+\.ts):\d+:\d+\)|at (?:async )?(?:file:\/\/)?([^():\s]+\.ts):\d+:\d+/.exec(line))
    .flatMap((m) => (m ? [m[1] ?? m[2]!] : []))
    .filter((f) => f.startsWith(core) && !f.endsWith('.test.ts'))
    .map((f) => basename(f))
    .reverse();
  return files.filter((f, i) => f !== files[i - 1]);
}

/** A policy that records the schedule and backend it is given. */
function spy(name: string, seen: { schedule?: RopeSchedule; backend?: Backend }[]): CachePolicy {
  return {
    name,
    wrapForward(options: WrapForwardOptions) {
      seen.push({ schedule: options.schedule, backend: options.backend });
      return options.next(options.request);
    },
  };
}

describe('one forward step', () => {
  it('a forward from Session.forward to the backend passes each module once, over a bare backend and over nested wrappers', async () => {
    for (const wrap of [(b: Backend) => b, (b: Backend) => wrapBackend(b), (b: Backend) => wrapBackend(wrapBackend(b))]) {
      const stacks: string[][] = [];
      const session = new Session(wrap(stackProbe(model.backend, stacks)));
      await session.prefill([1, 2, 3]);
      await session.forward([4]);
      session.dispose();
      expect(stacks).toHaveLength(2);
      const walk = stacks[1]!;
      expect(walk).toEqual(['session.ts', 'wrap-backend.ts', 'compose-policies.ts', 'backend-call.ts']);
      expect(new Set(walk).size).toBe(walk.length);
    }
  });

  it('Session uses a wrapped backend as it is and wraps a bare one once', () => {
    const wrapped = wrapBackend(model.backend);
    expect(new Session(wrapped).backend).toBe(wrapped);
    const bare = new Session(model.backend);
    expect(isPolicyBackend(bare.backend)).toBe(true);
    expect(bare.backend.base).toBe(model.backend);
    expect(bare.backend.policies).toEqual([]);
    expect(isPolicyBackend(model.backend)).toBe(false);
  });

  it('wrapping a wrapped backend extends its one chain: outer policies first, the same base and schedule', () => {
    const a: CachePolicy = { name: 'a' };
    const b: CachePolicy = { name: 'b' };
    const inner = wrapBackend(model.backend, b);
    const outer = wrapBackend(inner, a);
    expect(outer.policies).toEqual([a, b]);
    expect(outer.base).toBe(model.backend);
    expect(outer.inner).toBe(inner);
    expect(outer.schedule).toBe(inner.schedule);
  });

  it('one schedule per wrapped backend: the model one by default, the same object everywhere', () => {
    const w = wrapBackend(model.backend);
    expect(w.schedule).toBe(modelSchedule(model.config.rope));
    expect(scheduleOf(model.backend)).toBe(w.schedule);
    expect(scheduleOf(w)).toBe(w.schedule);
    expect(new Session(w).schedule).toBe(w.schedule);
  });

  it('a schedule given to wrapBackend reaches every policy, nested ones too, and the Session over it', async () => {
    const long = model.schedule.regimeFor(model.threshold + 1);
    const pinned = pinnedSchedule(model.schedule, long);
    const seen: { schedule?: RopeSchedule; backend?: Backend }[] = [];
    const inner = wrapBackend({ schedule: pinned }, model.backend, spy('inner', seen));
    const outer = wrapBackend(inner, spy('outer', seen));
    const session = new Session(outer);
    expect(session.schedule).toBe(pinned);
    await session.prefill(randomIds(3, 4, model.vocab));
    expect(seen.map((s) => s.schedule)).toEqual([pinned, pinned]);
    // The outer policy sees what it was wrapped around, the inner one the bare backend.
    expect(seen.map((s) => s.backend)).toEqual([inner, model.backend]);
    // A 4-token prompt is short, but the pinned schedule rotates it long.
    expect(session.cache.uniformRegime()?.id).toBe(long.id);
    session.dispose();
  });

  it('a Session schedule over a bare backend reaches the wrapper it makes; over a wrapped one with another schedule it is refused', () => {
    const pinned = pinnedSchedule(model.schedule, model.schedule.regimeFor(model.threshold + 1));
    const s = new Session(model.backend, { schedule: pinned });
    expect(s.backend.schedule).toBe(pinned);
    s.dispose();
    const wrapped = wrapBackend(model.backend);
    expect(() => new Session(wrapped, { schedule: pinned })).toThrow(SessionError);
    expect(() => new Session(wrapped, { schedule: pinned })).toThrow(/schedule/);
    // The same schedule object is no conflict.
    expect(new Session(wrapped, { schedule: wrapped.schedule }).backend).toBe(wrapped);
  });

  it('refuses a wrapBackend call without a backend, with a typed error', () => {
    expect(() => wrapBackend({ schedule: model.schedule } as never)).toThrow(expect.objectContaining({ name: 'PolicyError', code: 'not-a-backend' }));
  });
});
