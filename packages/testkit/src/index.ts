/**
 * @packageDocumentation
 * Test fixtures shared by the workspace's tests and scripts (private, never published). Nothing here
 * imports vitest: `useTinyModels` lives in the `@ropeswitch/testkit/vitest` entry.
 */
export { TINY_BASE_JSON, TINY_DYNAMIC_JSON, TINY_LONGROPE_JSON, type TinyModel, loadTinyModel, tinyDynamicNtk, tinyLongRope } from './tiny-models.js';
export { TINY_LLAMA, TINY_SIZES, type LongRopeScaling, longRopeScaling } from './tiny-configs.js';
export { randomIds } from './random-ids.js';
export { maxAbsDiff } from './max-abs-diff.js';
export { layerKeys, snapshot, snapshotByLayer, spanIds } from './cache-snapshots.js';
export { type RecordedRow, type RecordingBackend, type RecordingOptions, recording } from './recording-backend.js';
export { type FaultyBackend, faulty } from './faulty-backend.js';
export { GpuLikeCache, gpuLike } from './gpu-like-backend.js';
export { type Step, oracleDiffs, teacherForce } from './teacher-force.js';
export { expectRejection } from './expect-rejection.js';
export { logging } from './logging-policy.js';
export { pinnedSchedule } from './pinned-schedule.js';
export { type TestValue, appendRows } from './cache-rows.js';
