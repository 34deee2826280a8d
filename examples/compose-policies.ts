// Composing policies. `when` routes each sequence by a condition; inside a branch, policies run in
// order. Here, on LongRoPE: build a long-regime shadow copy of the cache in small chunks, and if it
// is not ready at the crossing ("late: 'pass'"), rerotate the cached keys right away (cheap, approximate)
// and let the shadow swap in the exact cache once it has caught up. Dynamic NTK, whose regime changes
// at every step, goes to rePrefill instead.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { Session, argmax, loadCheckpoint, noCacheForward, wrapBackend } from '@ropeswitch/core';
import { rePrefill, rerotate, shadowPrefill, when } from '@ropeswitch/policies';

const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
const backend = new ReferenceBackend(config, weights);
await weights.close();

const policy = when(
  (_row, { schedule }) => schedule.changesEveryStep,
  rePrefill(),
  // A window of 4 tokens with chunks of 3 cannot catch up with 60 cached tokens before the crossing.
  [shadowPrefill({ window: 4, chunk: 3, late: 'pass' }), rerotate()],
);
const session = new Session(wrapBackend(backend, policy));
const content = Array.from({ length: 58 }, (_, i) => 4 + ((i * 11) % 48));
const prompt = [0, ...content, 1]; // 60 tokens, threshold 64
const steps = 40;
const ids = [...prompt];
let logits = await session.prefill(prompt, { plannedLength: prompt.length + steps });
let seen = 0;
for (let step = 0; step < steps; step++) {
  const oracle = await noCacheForward(backend, ids);
  const maxDiff = oracle.reduce((m, v, i) => Math.max(m, Math.abs(v - logits[i]!)), 0);
  const events = session.events.slice(seen).map((e) => `${e.type} by ${e.policy}`);
  seen = session.events.length;
  console.log(`step ${String(step).padStart(2)}: length ${ids.length} max |Δlogit| vs oracle ${maxDiff.toExponential(1)}${events.length ? `  [${events.join(', ')}]` : ''}`);
  const next = argmax(oracle);
  ids.push(next);
  logits = await session.forward([next]);
}
session.dispose();
await backend.dispose();
