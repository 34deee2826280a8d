// Quantized onnxruntime exports: the same checkpoint exported as int8 and int4 (`MatMulNBits`
// blocks of 32 for every projection and the LM head, the embedding float32), each cached on disk
// and found again by the checkpoint files' identity, then run through a cache policy across the
// LongRoPE crossing. The trained copy model (threshold L = 64) copies a 50-token prompt.
// `ropeswitch generate --backend onnxruntime --quantize int4 …` does the same from the command line.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';

const cacheDir = await mkdtemp(join(tmpdir(), 'ropeswitch-quantized-'));
try {
  const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 11) % 48));
  const prompt = [0, ...content, 1]; // [BOS] x1..x50 [SEP]
  const target = [...content, 2]; // the copy, then EOS
  for (const quantize of ['int8', 'int4'] as const) {
    const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
    const phases = new Set<string>();
    // checkpointDir: the export's cache key is the folder's files, so the second open reads no weight.
    const options = { cacheDir, checkpointDir: TRAINED_MODEL_DIR, quantize, onProgress: (p: { phase: string }) => phases.add(p.phase) };
    const backend = await OnnxRuntimeBackend.open(config, weights, options);
    const { quantized, fellBack } = backend.exported.manifest.quantization;
    const mb = (backend.exported.manifest.files.data.bytes / 1e6).toFixed(2);
    console.log(`${quantize}: exported ${quantized.length} matrices as MatMulNBits (${fellBack.length} kept float32), ${mb} MB of weights; phases ${[...phases].join(', ')}`);
    phases.clear();
    const again = await OnnxRuntimeBackend.open(config, weights, options);
    console.log(`${quantize}: reopened the cached export (exported again: ${again.exported.created}); phases ${[...phases].join(', ')}`);
    await again.dispose();
    await weights.close();

    const result = await generate(wrapBackend(backend, shadowPrefill()), prompt, { maxNewTokens: target.length });
    const copied = result.tokens.filter((t, i) => t === target[i]).length;
    console.log(`${quantize}: copied ${copied}/${target.length}, events ${result.events.map((e) => `${e.type}@${e.atLength}`).join(' ')}`);
    await backend.dispose();
  }
} finally {
  await rm(cacheDir, { recursive: true, force: true });
}
