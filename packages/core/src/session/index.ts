export { Session } from './session.js';
export { noCacheForward } from './no-cache-forward.js';
export { greedyDecode, greedyNoCache, argmax, type GreedyOptions, type GreedyResult } from './greedy.js';
