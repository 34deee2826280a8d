// A hand-written decode loop with a cache policy. Wrapping the backend is the whole fix: the loop
// below is the same as examples/stale-loop.ts, but `rePrefill()` rebuilds the cache under the long
// regime when the sequence crosses the threshold, so every step agrees with the no-cache oracle.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { Session, argmax, loadCheckpoint, noCacheForward, wrapBackend } from '@ropeswitch/core';
import { rePrefill, warnOnly } from '@ropeswitch/policies';

const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
const backend = new ReferenceBackend(config, weights);
await weights.close();

// warnOnly first (it sees the request first and reports the regime change), then rePrefill.
const session = new Session(wrapBackend(backend, warnOnly(), rePrefill()), {
  onEvent: (e) => console.log(`  event ${e.type} from ${e.policy} at length ${e.atLength}`),
});
const content = Array.from({ length: 56 }, (_, i) => 4 + ((i * 7) % 48));
const prompt = [0, ...content, 1]; // [BOS] x1..x56 [SEP]: 58 tokens, threshold 64
const steps = 10;
const ids = [...prompt];
let logits = await session.prefill(prompt, { plannedLength: prompt.length + steps });
let agree = 0;
for (let step = 0; step < steps; step++) {
  const oracle = await noCacheForward(backend, ids); // full forward, regime of the whole length
  const cached = argmax(logits);
  const truth = argmax(oracle);
  agree += cached === truth ? 1 : 0;
  const regime = session.schedule.regimeFor(ids.length).id;
  console.log(`step ${step}: length ${ids.length} (${regime}) cached ${cached} oracle ${truth}${cached === truth ? '' : '  <- differs'}`);
  ids.push(cached);
  logits = await session.forward([cached]);
}
console.log(`${agree}/${steps} steps agree with the oracle; cache regimes now: ${session.cache.regimeSpans().map((s) => s.regime.id).join(', ')}`);
session.dispose();
await backend.dispose();
