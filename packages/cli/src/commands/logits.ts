import { noCacheForward } from '@ropeswitch/core';
import { choice, idList, intOption, parseOptions, required } from '../args.js';
import { BACKEND_FLAGS, BACKEND_FLAGS_USAGE, backendSettings } from '../backend-flags.js';
import { BACKEND_NAMES, openModelForCommand, resolveModelDir } from '../backends.js';
import type { CommandIO } from '../io.js';
import { UsageError } from '../usage-error.js';
import { rows } from '../logits-json.js';

export const logitsUsage = `ropeswitch logits --model DIR|builtin|trained --ids 1,2,3 [--last N] [--backend reference|onnxruntime|webgpu] ${BACKEND_FLAGS_USAGE}`;

/** One forward without cache (regime chosen by the total length); prints `{"logits": [[...], ...]}`. */
export async function logitsCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('logits', argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    last: { type: 'string' },
    backend: { type: 'string' },
    ...BACKEND_FLAGS,
  });
  const ids = idList('ids', required('logits', 'ids', o.ids));
  const last = intOption('last', o.last, 1, 1);
  if (last > ids.length) throw new UsageError(`--last ${last} exceeds the ${ids.length} ids given`);
  const modelDir = await resolveModelDir(required('logits', 'model', o.model));
  const { backend } = await openModelForCommand(choice('backend', o.backend, BACKEND_NAMES, 'reference'), modelDir, io, backendSettings(o));
  try {
    const logits = await noCacheForward(backend, ids, { last });
    io.stdout(`${JSON.stringify({ logits: rows(logits, backend.config.vocabSize) })}\n`);
  } finally {
    await backend.dispose();
  }
}

