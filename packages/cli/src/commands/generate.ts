import { Session, greedyDecode } from '@ropeswitch/core';
import { choice, idList, intOption, parseOptions, required } from '../args.js';
import { BACKEND_NAMES, openBackend, resolveModelDir } from '../backends.js';
import type { CommandIO } from '../io.js';

export const generateUsage =
  'ropeswitch generate --model DIR --ids 1,2,3 --max-new-tokens N [--policy stale] [--backend reference] [--json]';

/** Cache policies selectable with `--policy`. `stale` keeps the cache through a regime change, as a custom loop on HF does. */
export const POLICY_NAMES = ['stale'] as const;

/** Greedy decoding with a KV cache; `--json` prints `{"tokens", "logits", "events"}`. */
export async function generateCommand(argv: string[], io: CommandIO): Promise<void> {
  const o = parseOptions('generate', argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    policy: { type: 'string' },
    backend: { type: 'string' },
    json: { type: 'boolean' },
  });
  const ids = idList('ids', required('generate', 'ids', o.ids));
  const maxNewTokens = intOption('max-new-tokens', required('generate', 'max-new-tokens', o['max-new-tokens']), 0, 1, 1 << 20);
  choice('policy', o.policy, POLICY_NAMES, 'stale');
  const modelDir = resolveModelDir(required('generate', 'model', o.model));
  const backend = await openBackend(choice('backend', o.backend, BACKEND_NAMES, 'reference'), modelDir);
  const session = new Session(backend);
  try {
    const result = await greedyDecode(session, ids, { maxNewTokens });
    if (o.json) {
      const logits = result.logits.map((l) => Array.from(l));
      io.stdout(`${JSON.stringify({ tokens: result.tokens, logits, events: [] })}\n`);
    } else {
      const s = session.schedule;
      io.stdout(`prompt (${ids.length} tokens): ${ids.join(' ')}\n`);
      io.stdout(`generated (${result.tokens.length} tokens, policy stale): ${result.tokens.join(' ')}\n`);
      // The forward of step i covers ids.length + i tokens; the first past the threshold is the crossing.
      const longestForward = ids.length + result.tokens.length - 1;
      if (s.threshold !== undefined && ids.length <= s.threshold && longestForward > s.threshold) {
        io.stdout(`the sequence crossed the RoPE threshold (${s.threshold}) at step ${s.threshold - ids.length + 1}: cached keys from before it are stale\n`);
      }
    }
  } finally {
    session.dispose();
    await backend.dispose();
  }
}
