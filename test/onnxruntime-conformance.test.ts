import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { loadCheckpoint } from '@ropeswitch/core';
import { describeBackendParity } from './conformance/backend-parity.js';
import { describePolicyConformance } from './conformance/policy-suite.js';

// The onnxruntime backend through both backend-neutral suites, at the fixtures' 1e-4. Each case is
// exported once: later opens (the second suite, later runs) reuse the export cached on disk.
async function open(dir: string): Promise<OnnxRuntimeBackend> {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return await OnnxRuntimeBackend.open(config, weights);
  } finally {
    await weights.close();
  }
}

describeBackendParity('onnxruntime backend', open);
describePolicyConformance('onnxruntime backend', open);
