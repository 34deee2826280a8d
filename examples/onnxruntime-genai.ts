// A standard onnxruntime-genai Phi-3 export (GroupQueryAttention with rotary fused in, cos/sin
// caches picked by an `If` on the total length), made to take the caller's regime. A downloaded
// model folder works the same way (see packages/backends/onnxruntime/README.md); here the trained
// copy-task model is first written in that layout, so the example runs offline.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GenaiOnnxBackend, writeGenaiModel } from '@ropeswitch/backend-onnxruntime';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { rePrefill, stale } from '@ropeswitch/policies';

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-genai-example-'));
try {
  const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
  const files = await writeGenaiModel(dir, config, weights); // model.onnx + model.onnx.data + genai_config.json
  await weights.close();
  console.log(`genai-layout model: ${[files.modelPath, files.dataPath, files.genaiConfigPath].map((f) => f.slice(dir.length + 1)).join(', ')}`);

  // The rope factors are not in genai_config.json: the HF config.json says which they are.
  const backend = await GenaiOnnxBackend.open(dir, { hfConfigDir: TRAINED_MODEL_DIR });
  const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 11) % 48));
  const prompt = [0, ...content, 1];
  const target = [...content, 2];
  for (const policy of [stale(), rePrefill()]) {
    const result = await generate(wrapBackend(backend, policy), prompt, { maxNewTokens: target.length, collectLogits: false });
    const copied = result.tokens.filter((t, i) => t === target[i]).length;
    console.log(`${policy.name}: copied ${copied}/${target.length}${result.events.length ? `, events ${result.events.map((e) => e.type).join(' ')}` : ''}`);
  }
  await backend.dispose();
} finally {
  await rm(dir, { recursive: true, force: true });
}
