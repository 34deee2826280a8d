import type { ModelConfig } from '../config/model-config.js';
import { positionLimit } from '../config/position-limit.js';
import { BackendError } from '../errors.js';
import type { BackendCapabilities, ForwardRequest } from './backend.js';

/**
 * Checks a forward request against the model before any backend work, so every backend rejects
 * bad input the same way: ids outside the vocabulary, positions at or past
 * the model's position limit, mismatched lengths, a foreign or disposed cache, a shared cache.
 */
export function validateForwardRequest(
  config: ModelConfig,
  capabilities: BackendCapabilities,
  request: ForwardRequest,
): void {
  const { rows } = request;
  if (rows.length === 0) throw new BackendError('empty-request', 'a forward request needs at least one row');
  if (rows.length > capabilities.maxRows) {
    throw new BackendError('too-many-rows', `${rows.length} rows in one forward; this backend takes at most ${capabilities.maxRows}`);
  }
  const limit = positionLimit(config);
  const seen = new Set<object>();
  rows.forEach((row, r) => {
    const n = row.tokens.length;
    if (n === 0) throw new BackendError('empty-row', `row ${r} has no tokens`);
    if (row.positions.length !== n) {
      throw new BackendError('length-mismatch', `row ${r} has ${n} tokens but ${row.positions.length} positions`);
    }
    const want = row.logits ?? 1;
    if (!Number.isInteger(want) || want < 0 || want > n) {
      throw new BackendError('bad-logits-count', `row ${r} asks for logits of ${want} positions; it has ${n} tokens`);
    }
    for (let i = 0; i < n; i++) {
      const id = row.tokens[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) {
        throw new BackendError('token-out-of-range', `row ${r}: token id ${id} at index ${i} is outside the vocabulary [0, ${config.vocabSize})`);
      }
      const p = row.positions[i]!;
      if (!Number.isInteger(p) || p < 0 || p >= limit) {
        throw new BackendError('position-out-of-range', `row ${r}: position ${p} at index ${i} is outside [0, ${limit}) (the model's position limit, see positionLimit)`);
      }
    }
    const { cache } = row;
    if (cache.disposed) throw new BackendError('cache-disposed', `row ${r}: its cache was disposed`);
    if (cache.location !== capabilities.cacheLocation) {
      throw new BackendError('cache-location', `row ${r}: a ${cache.location} cache given to a backend whose caches live on the ${capabilities.cacheLocation}`);
    }
    const { numLayers, numKvHeads, headDim } = cache.layout;
    if (numLayers !== config.numLayers || numKvHeads !== config.numKvHeads || headDim !== config.headDim) {
      throw new BackendError('cache-layout', `row ${r}: cache layout ${numLayers}×${numKvHeads}×${headDim} does not match the model's ${config.numLayers}×${config.numKvHeads}×${config.headDim} (layers × kv heads × head dim)`);
    }
    if (seen.has(cache)) throw new BackendError('shared-cache', `row ${r} uses the same cache as an earlier row`);
    seen.add(cache);
    if (row.regime.invFreq.length !== config.rope.rotaryDim / 2) {
      throw new BackendError('regime-size', `row ${r}: regime ${row.regime.id} has ${row.regime.invFreq.length} frequencies; the model rotates ${config.rope.rotaryDim / 2} pairs`);
    }
  });
}
