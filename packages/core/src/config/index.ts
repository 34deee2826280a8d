export type {
  ModelConfig,
  ModelFamily,
  RopeConfig,
  RopePairing,
  RopeScaling,
  RopeType,
} from './model-config.js';
export { parseModelConfig } from './parse-config.js';
export { loadModelConfig } from './load-config.js';
export { positionLimit } from './position-limit.js';
