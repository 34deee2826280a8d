// The quality cost of the reference backend's weight dtypes (`weights: 'bfloat16' | 'float16' |
// 'int8'`, see the package README) beside the quality cost of each cache policy, as
// scripts/measure-quantization.ts measures onnxruntime's quantized exports (the same tables, from
// scripts/support/precision-quality.ts). A measurement, not a test: run it with
//   npx tsx scripts/measure-weight-dtypes.ts [--phi3 DIR] [--stream 128] [--sequences 50] [--threads N] [--no-task]
//
// 1. Logits against float32 weights, teacher-forced over one token stream (every run sees the same
//    prefix at every step): top-1 agreement, mean and max KL(float32 ‖ dtype) in nats, max |Δlogit|,
//    on `builtin` (make-tiny, L = 4096), the trained copy model (its copy task's prompt and answer)
//    and, with --phi3, a real-shape checkpoint (e.g. `ropeswitch make-model --like phi-3-mini-128k
//    --layers 2`: random weights, stored in bf16, so bfloat16 is lossless there).
// 2. Copy-task accuracy of every policy on the trained model under each dtype (`--sequences`
//    seeded sequences per copy length n = 40, 50, 60).
import { ReferenceBackend, WEIGHT_DTYPES, type WeightDtype } from '@ropeswitch/backend-reference';
import { loadCheckpoint } from '@ropeswitch/core';
import { parseArgs } from 'node:util';
import { runPrecisionStudy } from './support/precision-quality.js';

const { values } = parseArgs({
  options: { phi3: { type: 'string' }, stream: { type: 'string' }, sequences: { type: 'string' }, threads: { type: 'string' }, 'no-task': { type: 'boolean' } },
});
const streamLength = Number(values.stream ?? 128);
const sequences = Number(values.sequences ?? 50);
const threads = values.threads === undefined ? undefined : Number(values.threads);

/** The model in `dir` under every weight dtype. */
async function openAll(dir: string): Promise<Record<WeightDtype, ReferenceBackend>> {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    const out = {} as Record<WeightDtype, ReferenceBackend>;
    for (const dtype of WEIGHT_DTYPES) out[dtype] = new ReferenceBackend(config, weights, { weights: dtype, ...(threads !== undefined ? { threads } : {}) });
    return out;
  } finally {
    await weights.close();
  }
}

await runPrecisionStudy({
  openAll,
  base: 'float32',
  against: 'float32 weights',
  threads,
  streamLength,
  sequences,
  ...(values.phi3 ? { phi3: values.phi3 } : {}),
  noTask: values['no-task'] === true,
});
