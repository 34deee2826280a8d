// Half-precision KV caches on onnxruntime: `cacheDtype: 'float16'` makes core `Float16KvCache`s
// (binary16 bits in Uint16Arrays, handed to onnxruntime without a copy; the graph attends in
// float32), half the bytes of the float32 cache. Every policy runs on them unchanged: here
// shadowPrefill (an exact policy: its second cache is float16 too) and rerotate, across the
// LongRoPE crossing of the trained copy model (L = 64), beside the same run on float32 caches.
// `ropeswitch generate --backend onnxruntime --cache-dtype float16 …` does the same from the command line.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { Float16KvCache, Session, generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { rerotate, shadowPrefill } from '@ropeswitch/policies';

const cacheDir = await mkdtemp(join(tmpdir(), 'ropeswitch-float16-cache-'));
try {
  const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 11) % 48));
  const prompt = [0, ...content, 1]; // [BOS] x1..x50 [SEP]
  const target = [...content, 2]; // the copy, then EOS
  const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
  const open = (cacheDtype: 'float32' | 'float16') => OnnxRuntimeBackend.open(config, weights, { cacheDir, checkpointDir: TRAINED_MODEL_DIR, cacheDtype });
  const backends = { float32: await open('float32'), float16: await open('float16') };
  await weights.close();
  for (const [name, policy] of [['shadowPrefill', shadowPrefill], ['rerotate', rerotate]] as const) {
    const logits: Record<string, Float32Array[]> = {};
    for (const [dtype, backend] of Object.entries(backends)) {
      const session = new Session(wrapBackend(backend, policy()));
      const result = await generate(session, prompt, { maxNewTokens: target.length });
      logits[dtype] = result.logits;
      const copied = result.tokens.filter((t, i) => t === target[i]).length;
      const cache = session.cache;
      console.log(`${name}, ${dtype} cache (${cache instanceof Float16KvCache ? 'Float16KvCache' : 'CpuKvCache'}, ${cache.byteLength} bytes): copied ${copied}/${target.length}, events ${result.events.map((e) => `${e.type}@${e.atLength}`).join(' ')}`);
      session.dispose();
    }
    let worst = 0;
    let scale = 0;
    logits.float32!.forEach((row, i) =>
      row.forEach((v, j) => {
        worst = Math.max(worst, Math.abs(v - logits.float16![i]![j]!));
        scale = Math.max(scale, Math.abs(v));
      }),
    );
    console.log(`${name}: max |Δ logit| float16 vs float32 cache ${worst.toExponential(2)} (logits up to ±${scale.toFixed(1)})`);
  }
  for (const backend of Object.values(backends)) await backend.dispose();
} finally {
  await rm(cacheDir, { recursive: true, force: true });
}
