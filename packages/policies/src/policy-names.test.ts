import { PolicyError, Session, wrapBackend } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import * as policies from './index.js';
import { POLICY_NAMES, policyByName } from './policy-names.js';
import { randomIds, teacherForce } from '@ropeswitch/testkit';
import { useTinyModels } from '@ropeswitch/testkit/vitest';

const models = useTinyModels();

describe('policyByName', () => {
  it('resolves every name to a fresh policy carrying that name', () => {
    expect(POLICY_NAMES).toEqual(['stale', 'warn-only', 're-prefill', 'rerotate', 'pre-estimate', 'shadow-prefill']);
    for (const name of POLICY_NAMES) {
      const a = policyByName(name);
      const b = policyByName(name);
      expect(a.name).toBe(name);
      expect(a).not.toBe(b);
    }
  });

  it('gives the same policies as the factories', () => {
    expect(policyByName('stale')).toEqual(policies.stale());
    expect(policyByName('re-prefill').name).toBe(policies.rePrefill().name);
    expect(policyByName('shadow-prefill').name).toBe(policies.shadowPrefill().name);
  });

  it('every named policy runs a crossing on the tiny model', async () => {
    const ids = randomIds(111, 19, models.longrope.vocab);
    for (const name of POLICY_NAMES) {
      const session = new Session(wrapBackend(models.longrope.backend, policyByName(name)));
      const steps = await teacherForce(session, ids, 12, 19);
      expect(steps, name).toHaveLength(8);
      expect(session.length).toBe(19);
    }
  });

  it.each(['', 'Stale', 'rePrefill', 're_prefill', 'nope', 'toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf'])(
    'rejects %j with PolicyError unknown-policy listing the names',
    (name) => {
      let caught: unknown;
      try {
        policyByName(name);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(PolicyError);
      expect((caught as PolicyError).code).toBe('unknown-policy');
      expect((caught as PolicyError).message).toContain('re-prefill');
    },
  );
});
