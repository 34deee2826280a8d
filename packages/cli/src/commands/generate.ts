import { type GenerateResult, type SamplingOptions, modelSchedule, generate, positionLimit, wrapBackend } from '@ropeswitch/core';
import { POLICY_NAMES, policyByName } from '@ropeswitch/policies';
import { choice, idList, intOption, numberOption, parseOptions, required } from '../args.js';
import { BACKEND_FLAGS, BACKEND_FLAGS_USAGE, backendSettings } from '../backend-flags.js';
import { BACKEND_NAMES, openModelForCommand, resolveModelDir } from '../backends.js';
import type { CommandIO } from '../io.js';
import { UsageError } from '../usage-error.js';

export const generateUsage =
  `ropeswitch generate --model DIR|builtin|trained (--ids 1,2,3 | --prompt TEXT) --max-new-tokens N [--policy NAME] [--backend reference|onnxruntime|webgpu] ${BACKEND_FLAGS_USAGE} [--chunk-size N] [--temperature T --top-k K --top-p P --seed S] [--json]`;

/** Cache policies selectable with `--policy`, by name (default `stale`, what a custom loop on HF does). */
export { POLICY_NAMES };

/**
 * Decoding with a KV cache through a cache policy (`--policy`, default `stale`). Greedy unless a
 * temperature is given. `--json` prints `{"tokens", "logits", "events"}` (`text` too with a tokenizer).
 */
export async function generateCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('generate', argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    prompt: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    policy: { type: 'string' },
    backend: { type: 'string' },
    'chunk-size': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean' },
    ...BACKEND_FLAGS,
  });
  if ((o.ids === undefined) === (o.prompt === undefined)) throw new UsageError('generate: give exactly one of --ids and --prompt');
  const maxNewTokens = intOption('max-new-tokens', required('generate', 'max-new-tokens', o['max-new-tokens']), 0, 1, 1 << 20);
  const policyName = choice('policy', o.policy, POLICY_NAMES, 'stale');
  const chunkSize = o['chunk-size'] === undefined ? undefined : intOption('chunk-size', o['chunk-size'], 0, 1);
  const sampling = samplingOptions(o);
  const modelDir = await resolveModelDir(required('generate', 'model', o.model));
  const { backend, tokenizer } = await openModelForCommand(choice('backend', o.backend, BACKEND_NAMES, 'reference'), modelDir, io, backendSettings(o));
  try {
    let ids: number[];
    if (typeof o.prompt === 'string') {
      if (!tokenizer) throw new UsageError(`generate: --prompt needs a tokenizer.json in ${modelDir}; give --ids instead`);
      ids = tokenizer.encode(o.prompt);
      if (ids.length === 0) throw new UsageError('generate: --prompt encodes to no tokens');
    } else {
      ids = idList('ids', required('generate', 'ids', o.ids));
    }
    // The session reserves its planned length up front: refuse a plan past the model's positions
    // before allocating for it (a cache sized by --max-new-tokens alone).
    const limit = positionLimit(backend.config);
    if (ids.length > limit) throw new UsageError(`generate: the prompt of ${ids.length} tokens exceeds the model's ${limit} positions`);
    if (ids.length + maxNewTokens - 1 > limit) {
      throw new UsageError(`generate: --max-new-tokens ${maxNewTokens} after ${ids.length} prompt tokens runs past the model's ${limit} positions; use at most ${limit - ids.length + 1}`);
    }
    const result = await generate(wrapBackend(backend, policyByName(policyName)), ids, {
      maxNewTokens,
      ...(tokenizer ? { tokenizer } : {}),
      ...(sampling ? { sampling } : {}),
      ...(chunkSize !== undefined ? { chunkSize } : {}),
    });
    const { text } = result;
    if (o.json) {
      const logits = result.logits.map((l) => Array.from(l));
      io.stdout(`${JSON.stringify({ tokens: result.tokens, logits, events: result.events, ...(text !== undefined ? { text } : {}) })}\n`);
    } else {
      io.stdout(describeRun(ids, result, policyName, text, modelSchedule(backend.config.rope).threshold));
    }
  } finally {
    await backend.dispose();
  }
}

function samplingOptions(o: Record<string, string | boolean | undefined>): SamplingOptions | undefined {
  const temperature = numberOption('temperature', o.temperature, 0, 100);
  const topK = o['top-k'] === undefined ? undefined : intOption('top-k', o['top-k'], 0, 1);
  const topP = numberOption('top-p', o['top-p'], 0, 1);
  const seed = o.seed === undefined ? undefined : intOption('seed', o.seed, 0, 0, 2 ** 32 - 1);
  if (temperature === undefined) {
    if (topK !== undefined || topP !== undefined || seed !== undefined) throw new UsageError('generate: --top-k, --top-p and --seed need --temperature');
    return undefined;
  }
  return { temperature, ...(topK !== undefined ? { topK } : {}), ...(topP !== undefined ? { topP } : {}), ...(seed !== undefined ? { seed } : {}) };
}

function describeRun(ids: number[], result: GenerateResult, policy: string, text: string | undefined, threshold: number | undefined): string {
  const lines = [
    `prompt (${ids.length} tokens): ${ids.join(' ')}`,
    `generated (${result.tokens.length} tokens, policy ${policy}): ${result.tokens.join(' ')}`,
  ];
  // The forward of step i covers ids.length + i tokens; the first past the threshold is the crossing.
  const longestForward = ids.length + result.tokens.length - 1;
  if (threshold !== undefined && ids.length <= threshold && longestForward > threshold) {
    lines.push(`the sequence crossed the RoPE threshold (${threshold}) at step ${threshold - ids.length + 1}`);
  }
  if (text !== undefined) lines.push(`text: ${JSON.stringify(text)}`);
  for (const e of result.events) lines.push(`event at length ${e.atLength}: ${describeEvent(e)}`);
  return `${lines.join('\n')}\n`;
}

function describeEvent(e: GenerateResult['events'][number]): string {
  switch (e.type) {
    case 'rope-regime-change':
      return `RoPE regime changed ${e.from} → ${e.to}; cached keys keep ${e.from} (${e.policy})`;
    case 're-prefill':
      return `re-prefilled ${e.tokens} tokens under ${e.regime} (${e.policy})`;
    case 'rerotate':
      return `rotated ${e.keys} cached keys ${e.from.join(', ')} → ${e.to}${e.onBackend ? ' on the backend' : ''} (${e.policy})`;
    case 'pre-estimate':
      return `planned length ${e.plannedLength} crosses the threshold: ${e.regime} from the first token (${e.policy})`;
    case 'shadow-start':
      return `started a ${e.regime} shadow copy of the cache (${e.policy})`;
    case 'shadow-swap':
      return `swapped in the ${e.regime} shadow copy${e.catchUpTokens ? ` after catching up ${e.catchUpTokens} tokens` : ''} (${e.policy})`;
  }
}
