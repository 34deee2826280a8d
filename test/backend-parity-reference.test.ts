import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { loadCheckpoint } from '@ropeswitch/core';
import { describeBackendParity } from './conformance/backend-parity.js';

// The suite other backends run, on the reference backend itself: it checks the suite (a reference
// that failed it would make every backend's parity meaningless).
describeBackendParity('reference backend', async (dir) => {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return new ReferenceBackend(config, weights);
  } finally {
    await weights.close();
  }
});
