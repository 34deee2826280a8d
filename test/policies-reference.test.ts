import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { loadCheckpoint } from '@ropeswitch/core';
import { describePolicyConformance } from './conformance/policy-suite.js';

// Every policy on every HF fixture, on the reference backend (the correctness anchor).
describePolicyConformance('reference backend', async (dir) => {
  const { config, weights } = await loadCheckpoint(dir);
  return new ReferenceBackend(config, weights);
});
