// The quality cost of quantized onnxruntime exports (int8, int4: MatMulNBits, blocks of 32, a
// scale and zero point each) beside the quality cost of each cache policy. A measurement, not a
// test: run it with
//   npx tsx scripts/measure-quantization.ts [--phi3 DIR] [--stream 128] [--sequences 50] [--threads 2] [--cache-dir DIR]
//     [--accuracy-level 0|4] [--no-task]
//
// 1. Logits against the float32 export, teacher-forced over one token stream (every quantized run
//    sees the same prefix at every step): top-1 agreement and mean KL(float32 ‖ quantized) in
//    nats, on `builtin` (make-tiny, L = 4096), the trained copy model (its copy task's prompt and
//    answer), and, with --phi3, a real-shape checkpoint (e.g. `ropeswitch make-model --like
//    phi-3-mini-128k --layers 2`; random weights, so its logits are flat and KL is small in absolute terms).
// 2. Copy-task accuracy of every policy on the trained model under float32, int8 and int4
//    (`--sequences` seeded sequences per copy length n = 40, 50, 60).
import { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { loadCheckpoint } from '@ropeswitch/core';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { runPrecisionStudy } from './support/precision-quality.js';

const { values } = parseArgs({
  options: { phi3: { type: 'string' }, stream: { type: 'string' }, sequences: { type: 'string' }, threads: { type: 'string' }, 'cache-dir': { type: 'string' }, 'no-task': { type: 'boolean' }, 'accuracy-level': { type: 'string' } },
});
const streamLength = Number(values.stream ?? 128);
const sequences = Number(values.sequences ?? 50);
const threads = values.threads === undefined ? undefined : Number(values.threads);
const cacheDir = values['cache-dir'] ?? tmpdir();
const accuracyLevel = values['accuracy-level'] === undefined ? undefined : (Number(values['accuracy-level']) as 0 | 1 | 2 | 3 | 4);
const MODES = ['float32', 'int8', 'int4'] as const;
type Mode = (typeof MODES)[number];

async function openAll(dir: string): Promise<Record<Mode, OnnxRuntimeBackend>> {
  const { config, weights } = await loadCheckpoint(dir);
  try {
    const out = {} as Record<Mode, OnnxRuntimeBackend>;
    for (const mode of MODES) {
      out[mode] = await OnnxRuntimeBackend.open(config, weights, {
        cacheDir,
        checkpointDir: dir,
        ...(threads !== undefined ? { threads } : {}),
        ...(mode === 'float32' ? {} : { quantize: mode, ...(accuracyLevel !== undefined ? { accuracyLevel } : {}) }),
      });
    }
    return out;
  } finally {
    await weights.close();
  }
}

await runPrecisionStudy({
  openAll,
  base: 'float32',
  against: 'the float32 export',
  note: (mode, backends) => {
    if (mode === 'float32') return '';
    const q = (backends[mode] as OnnxRuntimeBackend).exported.manifest.quantization;
    return `${q.quantized.length} matrices quantized, ${q.fellBack.length} float32`;
  },
  threads,
  streamLength,
  sequences,
  ...(values.phi3 ? { phi3: values.phi3 } : {}),
  noTask: values['no-task'] === true,
});
