export type {
  Backend,
  BackendCapabilities,
  ForwardRequest,
  ForwardResult,
  ForwardRow,
  RowLogits,
} from './backend.js';
export { validateForwardRequest } from './validate-request.js';
export { validateForwardResult } from './validate-result.js';
