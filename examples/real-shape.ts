// A checkpoint shaped like the model users run: `makeModel` writes one layer of Phi-3-mini-128k
// (hidden 3072, 32 heads, vocab 32064, its published LongRoPE factors) with seeded random weights,
// as HF ships it (bf16 safetensors shards and model.safetensors.index.json), streamed tensor by
// tensor. `loadCheckpoint` reports as a backend reads and converts it, and the model decodes
// through a cache policy like any other. `ropeswitch make-model --like phi-3-mini-128k --layers 2`
// does the same from the command line; `ropeswitch bench --model DIR` benchmarks the policies on it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { makeModel } from '@ropeswitch/cli';
import { generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-real-shape-'));
try {
  let t0 = performance.now();
  const made = await makeModel(join(dir, 'phi3'), { like: 'phi-3-mini-128k', layers: 1, seed: 7 });
  const written = (performance.now() - t0) / 1000;
  console.log(`wrote ${made.checkpoint.shards.length} shards, ${(made.checkpoint.fileBytes / 1e9).toFixed(2)} GB in ${written.toFixed(1)} s`);

  t0 = performance.now();
  let tenths = 0;
  const { config, weights } = await loadCheckpoint(join(dir, 'phi3'), {
    // Called after every piece read (8 MiB at most): print a tenth at a time.
    onProgress: ({ bytesRead, totalBytes }) => {
      while (tenths < 10 && bytesRead >= ((tenths + 1) * totalBytes) / 10) console.log(`  loading ${++tenths * 10}%`);
    },
  });
  const backend = new ReferenceBackend(config, weights);
  await weights.close();
  console.log(
    `loaded hidden ${config.hiddenSize}, ${config.numLayers} layer, vocab ${config.vocabSize} in ${((performance.now() - t0) / 1000).toFixed(1)} s; ` +
      `peak RSS ${(process.resourceUsage().maxRSS / 1e6).toFixed(2)} GB`,
  );

  const result = await generate(wrapBackend(backend, shadowPrefill()), [1, 450, 4086, 338, 263], { maxNewTokens: 4 });
  console.log(`decoded ${result.tokens.length} tokens: ${result.tokens.join(' ')}`);
  await backend.dispose();
} finally {
  await rm(dir, { recursive: true, force: true });
}
