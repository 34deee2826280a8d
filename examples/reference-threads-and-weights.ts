// The reference backend on every core and with smaller weights. `threads` runs its WebAssembly
// kernels on worker threads over shared memory (results identical to one thread); `weights`
// stores the weight matrices in bfloat16, float16 or int8 (per-row scaled) instead of float32, so
// a model past 4 GiB of float32 still loads. Each copies a sequence across the LongRoPE threshold
// with shadowPrefill on the trained model, and says what ran.
import { ReferenceBackend, WEIGHT_DTYPES } from '@ropeswitch/backend-reference';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { generate, loadCheckpoint, wrapBackend } from '@ropeswitch/core';
import { shadowPrefill } from '@ropeswitch/policies';

const content = Array.from({ length: 50 }, (_, i) => 4 + ((i * 7) % 48));
const prompt = [0, ...content, 1]; // [BOS] x1..x50 [SEP]: 52 tokens, threshold 64, the copy crosses it
let reference: number[] | undefined;
for (const weights of WEIGHT_DTYPES) {
  const checkpoint = await loadCheckpoint(TRAINED_MODEL_DIR);
  const backend = new ReferenceBackend(checkpoint.config, checkpoint.weights, { threads: 2, weights });
  await checkpoint.weights.close();
  const result = await generate(wrapBackend(backend, shadowPrefill()), prompt, { maxNewTokens: content.length + 1 });
  const copied = result.tokens.slice(0, content.length).filter((t, i) => t === content[i]).length;
  reference ??= result.tokens;
  const same = result.tokens.every((t, i) => t === reference![i]);
  console.log(`${weights}: copied ${copied}/${content.length}${same ? ', tokens as float32' : ''} | ${backend.deviceDescription}`);
  await backend.dispose();
}
