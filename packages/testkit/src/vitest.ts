/**
 * The testkit's vitest entry: helpers that register vitest hooks, kept apart from `index.ts` so
 * scripts can import the rest without loading vitest.
 */
export { type TinyModels, useTinyModels } from './use-tiny-models.js';
