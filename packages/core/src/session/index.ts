export { Session, type SessionOptions, type PrefillOptions, type SessionForwardOptions } from './session.js';
export { PrefixCache, type PrefixCacheOptions, type PrefixCacheStats, type PrefixTakeOptions } from './prefix-cache.js';
export { noCacheForward } from './no-cache-forward.js';
export { argmax } from './argmax.js';
export { greedyDecode, greedyNoCache, type GreedyOptions, type GreedyResult } from './greedy.js';
export { generate, type GenerateOptions, type GenerateResult, type GenerateStopReason } from './generate.js';
export { createSampler, type Sampler, type SamplingOptions } from './sampler.js';
export { BatchScheduler, type BatchSchedulerOptions } from './batch-scheduler.js';
export type { BatchSchedulerStats } from './step-queue.js';
