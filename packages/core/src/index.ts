/**
 * @packageDocumentation
 * ropeswitch core: HF config parsing, safetensors weights, RoPE schedules and regimes, the KV
 * cache, the backend contract, and sessions. Data flows tokens → session → backend → cache.
 */
export * from './errors.js';
export * from './config/index.js';
export * from './weights/index.js';
export * from './rope/index.js';
export * from './cache/index.js';
export * from './backend/index.js';
export * from './checkpoint/load-checkpoint.js';
export * from './session/index.js';
