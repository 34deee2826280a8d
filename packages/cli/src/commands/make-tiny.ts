import { RopeswitchError, WeightsError } from '@ropeswitch/core';
import { choice, intOption, parseOptions, required } from '../args.js';
import type { CommandIO } from '../io.js';
import { type TinyModelOptions, makeTinyModel } from '../random-models/make-tiny-model.js';
import { UsageError } from '../usage-error.js';

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
    originalMax: intOption('original-max', o['original-max'], 4096, 2, 2 ** 24),
    maxPositions: intOption('max-positions', o['max-positions'], 131072, 1, 2 ** 24),
    layers: intOption('layers', o.layers, 2, 1, 256),
    hidden: intOption('hidden', o.hidden, 64, 2, 16384),
    heads,
    kvHeads: intOption('kv-heads', o['kv-heads'], heads % 2 === 0 ? heads / 2 : heads, 1, 1024),
    vocab: intOption('vocab', o.vocab, 128, 2, 1 << 20),
    dtype: choice('dtype', o.dtype, ['f32', 'f16', 'bf16'] as const, 'f32'),
  };
  checkShape(options);
  try {
    await makeTinyModel(out, options);
  } catch (error) {
    if (error instanceof RopeswitchError) throw error;
    // mkdir / writeFile failures (a file in the way, no permission): a typed error naming the folder.
    throw new WeightsError('io-error', `${out}: cannot write the model (${(error as Error)?.message ?? String(error)})`, { file: out, cause: error });
  }
  io.stdout(
    `wrote ${out}: phi3, ${options.layers} layers, hidden ${options.hidden}, ${options.heads}/${options.kvHeads} heads, vocab ${options.vocab}, threshold ${options.originalMax}, ${options.dtype}\n`,
  );
}

/** Tiny models stay tiny: the weights are generated in memory before anything is written. */
export const MAX_TINY_PARAMETERS = 2 ** 26;

/** The shape checks the config parser would make, as usage errors naming the flags, plus a size bound checked before any allocation. */
function checkShape(o: Required<Pick<TinyModelOptions, 'layers' | 'hidden' | 'heads' | 'kvHeads' | 'vocab'>>): void {
  const headDim = o.hidden / o.heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new UsageError(`make-tiny: --hidden ${o.hidden} must be an even multiple of --heads ${o.heads} (the head dim is rotated in pairs)`);
  }
  if (o.heads % o.kvHeads !== 0) throw new UsageError(`make-tiny: --kv-heads ${o.kvHeads} must divide --heads ${o.heads}`);
  // Phi-3 layout: embedding and lm_head (V×H each); per layer fused qkv, o, gate_up (I = 2H), down, two norms.
  const kvDim = o.kvHeads * headDim;
  const perLayer = (o.hidden + 2 * kvDim) * o.hidden + o.hidden * o.hidden + 2 * (2 * o.hidden) * o.hidden + o.hidden * (2 * o.hidden) + 2 * o.hidden;
  const parameters = 2 * o.vocab * o.hidden + o.layers * perLayer + o.hidden;
  if (parameters > MAX_TINY_PARAMETERS) {
    throw new UsageError(`make-tiny: this shape has ${parameters} parameters, over the ${MAX_TINY_PARAMETERS} a tiny model may have; lower --hidden, --layers or --vocab`);
  }
}
