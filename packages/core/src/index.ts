/**
 * @packageDocumentation
 * ropeswitch core: HF config parsing, safetensors weights, RoPE schedules and regimes, the KV
 * cache, the backend contract, cache policies, sessions and generation, and tokenizers. Data flows tokens → session → policy
 * chain → backend → cache.
 */
export * from './errors.js';
export * from './config/index.js';
export * from './weights/index.js';
export * from './rope/index.js';
export * from './cache/index.js';
export * from './backend/index.js';
export * from './checkpoint/load-checkpoint.js';
export {
  type CheckpointTensor,
  type CheckpointWriteProgress,
  type WriteCheckpointOptions,
  type WrittenCheckpoint,
  writeCheckpoint,
} from './checkpoint/write-checkpoint.js';
export { type FileSink, type OpenFileSink, openFileSink } from './checkpoint/file-sink.js';
export * from './tokenizer/index.js';
export { SeededRandom } from './random/seeded-random.js';
export * from './policy/index.js';
export * from './session/index.js';
