/**
 * @packageDocumentation
 * The `ropeswitch` command line, usable as a library: `main(argv, io)` runs a command line,
 * `makeTinyModel` writes a seeded tiny Phi-3 LongRoPE model, `makeModel` a checkpoint shaped like a
 * published Phi-3-family model, `runDemo` runs the copy demo,
 * `runBench` runs the policy benchmark and returns its report (`BenchReport`).
 */
export { main, usage } from './main.js';
export type { CommandIO } from './io.js';
export { UsageError } from './usage-error.js';
export { makeTinyModel, tinyModelConfig, type TinyModelOptions } from './random-models/make-tiny-model.js';
export {
  MODEL_LIKES,
  likeConfig,
  makeModel,
  publishedConfig,
  type CheckpointDtype,
  type MadeModel,
  type MakeModelOptions,
  type ModelLike,
} from './random-models/make-model.js';
export { SeededRandom } from '@ropeswitch/core';
export {
  randomCheckpointTensors,
  writeRandomCheckpoint,
  type RandomCheckpointOptions,
} from './random-models/random-checkpoint.js';
export { runDemo, formatDemo, type DemoResult, type DemoRun } from './commands/demo.js';
export {
  BACKEND_NAMES,
  BUILTIN_MODEL,
  BUILTIN_QUICK_MODEL,
  MODEL_NAMES,
  TRAINED_MODEL_DIR,
  builtinModelDir,
  openBackend,
  resolveModelDir,
  type BackendName,
  type ModelName,
} from './backends.js';
export type * from './bench/bench-report.js';
export { runBench, type BenchOptions } from './bench/run-bench.js';
export { REFERENCE_POLICY } from './bench/targets.js';
export { createProgress, type BenchProgress } from './bench/progress.js';
export { renderMarkdown } from './bench/report-markdown.js';
export { renderHtml } from './bench/report-html.js';
export { CountingBackend } from './bench/counting-backend.js';
export {
  COPY_IDS,
  answerCopyTask,
  copyCrossingStep,
  copyExample,
  copyExamples,
  evaluateCopyTask,
  scoreCopy,
  summarizeCopy,
  type CopyAccuracy,
  type CopyEvaluation,
  type CopyExample,
  type CopyScore,
} from './bench/copy-task.js';
export { klDivergence, logSoftmax, mean } from './bench/logit-metrics.js';
