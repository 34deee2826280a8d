import { readLayerKeys } from '@ropeswitch/backend-webgpu';
import { createNodeWebGpuBackend } from '@ropeswitch/backend-webgpu/node';
import { loadCheckpoint } from '@ropeswitch/core';
import { describeBackendParity } from './conformance/backend-parity.js';
import { describePolicyConformance } from './conformance/policy-suite.js';

// The WebGPU backend on the software adapter (Mesa llvmpipe through Dawn's OpenGL ES path), which
// every CI machine has: no GPU needed. Without Mesa `open` throws, and every test fails with the
// message saying what to install: a missing adapter is never a skip.
async function open(dir: string) {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    return await createNodeWebGpuBackend(config, weights, { adapter: 'software' });
  } finally {
    await weights.close();
  }
}

// The device sums in float32 (the reference in float64): logits agree to ~2e-5 on the fixtures,
// 1e-3 is the bar. Rerotated keys differ from a fresh prefill's by float32 rounding of two
// rotations (~1e-6 relative).
const options = { logitTolerance: 1e-3, keyTolerance: 1e-4, readLayerKeys };

// Every case, the 4090-token one included (a 4090-token prefill takes ~2 s on llvmpipe; the case
// adds ~25 s): logits vs HF and the reference, chunked and batched forwards on the small cases, the
// cached greedy loop, rerotation; then every policy, at the real threshold for the large case.
describeBackendParity('webgpu, software adapter', open, options);
describePolicyConformance('webgpu, software adapter', open, options);
