// A hand-written decode loop on the built-in LongRoPE model, checked step by step against the
// no-cache oracle: the cached loop agrees until the total length crosses the threshold, then its
// stale short-factor keys make it diverge. (Cache policies that fix this wrap the backend.)
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { Session, argmax, loadCheckpoint, noCacheForward } from '@ropeswitch/core';

const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
const backend = new ReferenceBackend(config, weights);
await weights.close();

const content = Array.from({ length: 56 }, (_, i) => 4 + ((i * 7) % 48));
const prompt = [0, ...content, 1]; // [BOS] x1..x56 [SEP]: 58 tokens, threshold 64
const session = new Session(backend);
const ids = [...prompt];
let logits = await session.forward(prompt);
for (let step = 0; step < 10; step++) {
  const oracle = await noCacheForward(backend, ids); // full forward, regime of the whole length
  const cached = argmax(logits);
  const truth = argmax(oracle);
  const regime = session.schedule.regimeFor(ids.length).id;
  console.log(`step ${step}: length ${ids.length} (${regime}) cached ${cached} oracle ${truth}${cached === truth ? '' : '  <- stale cache diverges'}`);
  ids.push(truth);
  logits = await session.forward([truth]);
}
session.dispose();
await backend.dispose();
