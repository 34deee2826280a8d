import type { InferenceSession } from 'onnxruntime-node';
import type { ExecutionProviderName, ResolvedOptions } from './options.js';

/** onnxruntime's session config entry (`session.disable_prepacking`) that keeps weights as the export stores them. */
const DISABLE_PREPACKING = 'disable_prepacking';

/**
 * The session options an export is loaded with: the graph fully optimised, sequential, one
 * inter-op thread, `threads` intra-op threads, prepacking as {@link ResolvedOptions.prepackWeights}
 * says, and then the caller's `sessionOptions` over them (its `extra.session` entries merged over
 * the backend's, so a caller's `disable_prepacking` wins).
 */
export function exportSessionOptions(o: ResolvedOptions, provider: ExecutionProviderName, user: InferenceSession.SessionOptions = {}): InferenceSession.SessionOptions {
  const userExtra = (user.extra ?? {}) as Record<string, unknown>;
  const userSession = (userExtra.session ?? {}) as Record<string, unknown>;
  const session = { ...(o.prepackWeights ? {} : { [DISABLE_PREPACKING]: '1' }), ...userSession };
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    ...(o.threads !== undefined ? { intraOpNumThreads: o.threads } : {}),
    ...user,
    ...(Object.keys(session).length > 0 ? { extra: { ...userExtra, session } } : {}),
  };
}
