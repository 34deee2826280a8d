import { describe, expect, it } from 'vitest';
import { resolveOptions } from './options.js';
import { exportSessionOptions } from './session-options.js';

const sessionEntries = (options: ReturnType<typeof exportSessionOptions>) => ((options.extra ?? {}) as { session?: Record<string, string> }).session;

describe('the session options an export loads with', () => {
  it('weights are prepacked unless prepackWeights is false, whatever their precision', () => {
    expect(sessionEntries(exportSessionOptions(resolveOptions({}), 'cpu'))).toBeUndefined();
    expect(sessionEntries(exportSessionOptions(resolveOptions({ quantize: 'int4' }), 'cpu'))).toBeUndefined();
    expect(sessionEntries(exportSessionOptions(resolveOptions({ prepackWeights: false }), 'cpu'))).toEqual({ disable_prepacking: '1' });
    expect(sessionEntries(exportSessionOptions(resolveOptions({ quantize: 'int8', prepackWeights: false }), 'cpu'))).toEqual({ disable_prepacking: '1' });
  });

  it("the caller's session options win, their session entries merged over the backend's", () => {
    const options = exportSessionOptions(resolveOptions({ threads: 3, prepackWeights: false }), 'cpu', {
      enableCpuMemArena: false,
      interOpNumThreads: 2,
      extra: { session: { disable_prepacking: '0', intra_op_thread_affinities: '1' }, other: { x: '1' } },
    });
    expect(options).toMatchObject({ executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: 3, interOpNumThreads: 2, enableCpuMemArena: false });
    expect(options.extra).toEqual({ session: { disable_prepacking: '0', intra_op_thread_affinities: '1' }, other: { x: '1' } });
  });

  it('prepackWeights that is not a boolean is a bad option', () => {
    expect(() => resolveOptions({ prepackWeights: 'no' as never })).toThrow(expect.objectContaining({ name: 'BackendError', code: 'bad-option' }));
  });
});
