import type { ModelConfig } from '../config/model-config.js';
import { BackendError } from '../errors.js';
import type { ForwardRequest, ForwardResult } from './backend.js';

/**
 * Checks what a backend returned against what was asked: one result row per request row, each
 * with the requested number of positions × the model's vocabulary, and only finite logits. A NaN
 * or infinite logit names the row and the sequence length it was computed at.
 */
export function validateForwardResult(config: ModelConfig, request: ForwardRequest, result: ForwardResult, backendName: string): void {
  const rows = result?.rows;
  if (!Array.isArray(rows) || rows.length !== request.rows.length) {
    throw new BackendError('bad-result', `backend ${backendName} returned ${Array.isArray(rows) ? rows.length : 'no'} result rows for ${request.rows.length} request rows`);
  }
  rows.forEach((out, r) => {
    const row = request.rows[r]!;
    const count = row.logits ?? 1;
    const { vocabSize } = config;
    if (!out || out.count !== count || out.vocabSize !== vocabSize || !(out.data instanceof Float32Array) || out.data.length !== count * vocabSize) {
      throw new BackendError('bad-result', `backend ${backendName}: row ${r} should hold ${count} × ${vocabSize} logits; got ${out?.count} × ${out?.vocabSize} in ${out?.data?.length} values`);
    }
    const data = out.data;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) {
        const at = row.cache.length;
        throw new BackendError('nan-logits', `backend ${backendName}: row ${r} returned a non-finite logit (${data[i]}) at position ${Math.floor(i / vocabSize)} of its ${count}, computing the step at sequence length ${at}`);
      }
    }
  });
}
