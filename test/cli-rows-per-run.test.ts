import { describe, expect, it } from 'vitest';
import type { OnnxRuntimeBackend } from '@ropeswitch/backend-onnxruntime';
import { backendSettings } from '../packages/cli/src/backend-flags.js';
import { TRAINED_MODEL_DIR, openBackend } from '../packages/cli/src/backends.js';
import { UsageError } from '../packages/cli/src/usage-error.js';
import { runCli } from './support/run-cli.js';

// `--rows-per-run N`: the onnxruntime export's row slots (how many rows, e.g. a batch scheduler's
// sequences, share one session run); other backends ignore it.
describe('--rows-per-run', () => {
  it('reaches the onnxruntime export as its row slots; default 4', async () => {
    for (const [flags, slots] of [[{}, 4], [{ 'rows-per-run': '8' }, 8]] as const) {
      const backend = (await openBackend('onnxruntime', TRAINED_MODEL_DIR, { settings: backendSettings(flags) })) as OnnxRuntimeBackend;
      try {
        expect(backend.exported.manifest.slots).toBe(slots);
      } finally {
        await backend.dispose();
      }
    }
  });

  it('a value outside 1…64 is a usage error', () => {
    for (const bad of ['0', '65', 'x']) expect(() => backendSettings({ 'rows-per-run': bad })).toThrow(UsageError);
  });

  it('logits do not change with it (one row either way)', async () => {
    const logits = async (...flags: string[]) => {
      const r = await runCli(['logits', '--model', 'trained', '--ids', '3,9,4,1,7,2,8', '--backend', 'onnxruntime', ...flags]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    expect(await logits('--rows-per-run', '2')).toBe(await logits());
  });
});
