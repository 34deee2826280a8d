/**
 * @packageDocumentation
 * The `ropeswitch` command line, usable as a library: `main(argv, io)` runs a command line,
 * `makeTinyModel` writes a seeded tiny Phi-3 LongRoPE model, `runDemo` runs the copy demo.
 */
export { main, usage } from './main.js';
export type { CommandIO } from './io.js';
export { UsageError } from './usage-error.js';
export { makeTinyModel, tinyModelConfig, type TinyModelOptions } from './tiny-model/make-tiny-model.js';
export { SeededRandom } from '@ropeswitch/core';
export {
  randomCheckpointTensors,
  writeRandomCheckpoint,
  type RandomCheckpointOptions,
} from './tiny-model/random-checkpoint.js';
export { runDemo, formatDemo, type DemoResult, type DemoRun } from './commands/demo.js';
export { BUILTIN_MODEL_DIR, BACKEND_NAMES, openBackend, resolveModelDir, type BackendName } from './backends.js';
