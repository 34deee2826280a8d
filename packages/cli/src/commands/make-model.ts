import { intOption, parseOptions, quoted, required } from '../args.js';
import { createByteProgress } from '../byte-progress.js';
import type { CommandIO } from '../io.js';
import { type CheckpointDtype, MODEL_LIKES, type ModelLike, makeModel, publishedConfig } from '../random-models/make-model.js';
import { UsageError } from '../usage-error.js';

export const makeModelUsage = `ropeswitch make-model --like ${MODEL_LIKES.join('|')} --out DIR [--layers N] [--dtype bf16|f16|f32] [--seed S]`;

const DTYPES: readonly CheckpointDtype[] = ['bf16', 'f16', 'f32'];

/**
 * Writes a checkpoint shaped like a published model (its `config.json`, `num_hidden_layers` as
 * asked) with seeded random weights, sharded the way HF ships it, streamed tensor by tensor.
 */
export async function makeModelCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('make-model', argv, {
    like: { type: 'string' },
    out: { type: 'string' },
    layers: { type: 'string' },
    dtype: { type: 'string' },
    seed: { type: 'string' },
  });
  const like = required('make-model', 'like', o.like);
  if (!(MODEL_LIKES as readonly string[]).includes(like)) throw new UsageError(`make-model: unknown --like ${quoted(like)}; known: ${MODEL_LIKES.join(', ')}`);
  const out = required('make-model', 'out', o.out);
  const published = Number(publishedConfig(like as ModelLike)['num_hidden_layers']);
  const layers = intOption('layers', o.layers, published, 1, 1024);
  const dtype = o.dtype === undefined ? 'bf16' : (o.dtype as CheckpointDtype);
  if (!DTYPES.includes(dtype)) throw new UsageError(`--dtype must be one of ${DTYPES.join(', ')}, got ${quoted(o.dtype)}`);
  const seed = intOption('seed', o.seed, 0, 0, 2 ** 32 - 1);

  const progress = createByteProgress(io.stderr, io.isTTY === true, `make-model ${like}`);
  const started = performance.now();
  let made;
  try {
    made = await makeModel(out, { like: like as ModelLike, layers, dtype, seed, onProgress: (p) => progress.update(p.bytesWritten, p.totalBytes) });
  } finally {
    progress.finish();
  }
  const seconds = (performance.now() - started) / 1000;
  const { checkpoint, config, parameters } = made;
  io.stdout(
    `wrote ${out}: ${like} shape, ${layers} of ${published} layers, hidden ${config.hiddenSize}, ${config.numHeads}/${config.numKvHeads} heads, vocab ${config.vocabSize}, ` +
      `${(parameters / 1e9).toFixed(2)}B parameters, ${dtype}, ${checkpoint.shards.length} shards, ` +
      `${(checkpoint.fileBytes / 1e9).toFixed(2)} GB in ${seconds.toFixed(1)} s (${(checkpoint.fileBytes / 1e6 / seconds).toFixed(0)} MB/s)\n`,
  );
}
