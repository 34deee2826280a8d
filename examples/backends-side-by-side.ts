// One model, three backends, one cache policy: the trained copy-task model (threshold L = 64) copies
// a 50-token prompt, so the copy crosses L at its 13th token and `shadowPrefill` must swap in a
// long-factor cache. The reference backend (TypeScript + WebAssembly), onnxruntime-node (an
// exported graph whose rotary cos/sin are inputs) and WebGPU (WGSL kernels, the cache on the
// device; a real GPU when there is one, else Mesa's llvmpipe) give the same tokens.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { createNodeWebGpuBackend } from '@ropeswitch/backend-webgpu/node';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { type Backend, generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';

const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
const backends: [string, Backend][] = [
  ['reference', new ReferenceBackend(config, weights)],
  ['onnxruntime', await OnnxRuntimeBackend.open(config, weights, { threads: 1 })],
];
const gpu = await createNodeWebGpuBackend(config, weights);
backends.push([`webgpu (${gpu.deviceDescription})`, gpu]);
await weights.close(); // every backend copied what it needs

const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 11) % 48));
const prompt = [0, ...content, 1]; // [BOS] x1..x50 [SEP]: 52 tokens
const target = [...content, 2]; // the copy, then EOS

let first: { tokens: number[]; logits: Float32Array[] } | undefined;
for (const [name, backend] of backends) {
  const result = await generate(wrapBackend(backend, shadowPrefill()), prompt, { maxNewTokens: target.length });
  const copied = result.tokens.filter((t, i) => t === target[i]).length;
  const events = result.events.map((e) => `${e.type}@${e.atLength}`).join(' ');
  first ??= result;
  let maxDiff = 0;
  result.logits.forEach((l, s) => l.forEach((v, j) => (maxDiff = Math.max(maxDiff, Math.abs(v - first!.logits[s]![j]!)))));
  const same = result.tokens.every((t, i) => t === first!.tokens[i]);
  console.log(`${name}: copied ${copied}/${target.length}, events ${events}, tokens ${same ? 'equal' : 'DIFFER from'} reference's, max |Δ logit| ${maxDiff.toExponential(1)}`);
  await backend.dispose();
}
