import { choice, intOption, parseOptions, required } from '../args.js';
import type { CommandIO } from '../io.js';
import { makeTinyModel } from '../tiny-model/make-tiny-model.js';

export const makeTinyUsage =
  'ropeswitch make-tiny --out DIR [--seed N] [--original-max L] [--max-positions M] [--layers N] [--hidden H] [--heads A] [--kv-heads K] [--vocab V] [--dtype f32|f16|bf16]';

/** Writes a seeded tiny Phi-3 LongRoPE model in HF format. */
export async function makeTinyCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('make-tiny', argv, {
    out: { type: 'string' },
    seed: { type: 'string' },
    'original-max': { type: 'string' },
    'max-positions': { type: 'string' },
    layers: { type: 'string' },
    hidden: { type: 'string' },
    heads: { type: 'string' },
    'kv-heads': { type: 'string' },
    vocab: { type: 'string' },
    dtype: { type: 'string' },
  });
  const out = required('make-tiny', 'out', o.out);
  const heads = intOption('heads', o.heads, 4, 1, 1024);
  const options = {
    seed: intOption('seed', o.seed, 0, 0, 2 ** 32 - 1),
    originalMax: intOption('original-max', o['original-max'], 4096, 1, 2 ** 24),
    maxPositions: intOption('max-positions', o['max-positions'], 131072, 1, 2 ** 24),
    layers: intOption('layers', o.layers, 2, 1, 256),
    hidden: intOption('hidden', o.hidden, 64, 2, 16384),
    heads,
    kvHeads: intOption('kv-heads', o['kv-heads'], heads % 2 === 0 ? heads / 2 : heads, 1, 1024),
    vocab: intOption('vocab', o.vocab, 128, 2, 1 << 20),
    dtype: choice('dtype', o.dtype, ['f32', 'f16', 'bf16'] as const, 'f32'),
  };
  await makeTinyModel(out, options);
  io.stdout(
    `wrote ${out}: phi3, ${options.layers} layers, hidden ${options.hidden}, ${options.heads}/${options.kvHeads} heads, vocab ${options.vocab}, threshold ${options.originalMax}, ${options.dtype}\n`,
  );
}
