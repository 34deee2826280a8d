// Writing a policy with `rewriteRows`: re-prefill in ten lines (the README's example). Each row is
// asked about once per forward; a row whose cached keys are in another regime than its new tokens
// is replaced by the whole sequence under the new regime, into a fresh cache swapped in on success.
// Run beside the shipped rePrefill(), it gives the same tokens and the same logits, bit for bit.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { TRAINED_MODEL_DIR } from '@ropeswitch/cli';
import { generate, hasStaleKeys, lengthAfter, loadCheckpoint, rewriteRows, wrapBackend } from '@ropeswitch/core';
import { rePrefill } from '@ropeswitch/policies';

const myRePrefill = rewriteRows('my-re-prefill', (row, { backend }) => {
  if (!hasStaleKeys(row)) return undefined; // cached keys in the row's regime: pass it on
  const fresh = backend.createCache();
  const cat = (a: ArrayLike<number>, b: ArrayLike<number>) => Int32Array.from([...Array.from(a), ...Array.from(b)]);
  return {
    row: { ...row, tokens: cat(row.cache.tokens(), row.tokens), positions: cat(row.cache.positions(), row.positions), cache: fresh },
    onSuccess: () => row.cache.replaceWith(fresh), // the session's cache object takes the rebuilt one
    onFailure: () => fresh.dispose(), // a failed forward leaves the sequence as it was
    events: [{ type: 're-prefill', policy: 'my-re-prefill', regime: row.regime.id, tokens: row.cache.length + row.tokens.length, atLength: lengthAfter(row) }],
  };
});

const { config, weights } = await loadCheckpoint(TRAINED_MODEL_DIR);
const backend = new ReferenceBackend(config, weights);
await weights.close();

// The trained model's copy task: [BOS] x1..x56 [SEP], then the model copies x1..x56; threshold 64.
const content = Array.from({ length: 56 }, (_, i) => 4 + ((i * 7) % 48));
const prompt = [0, ...content, 1];
const run = (policy: typeof myRePrefill) => generate(wrapBackend(backend, policy), prompt, { maxNewTokens: content.length });
const mine = await run(myRePrefill);
const shipped = await run(rePrefill());
const copied = mine.tokens.filter((t, i) => t === content[i]).length;
const sameLogits = mine.logits.every((l, i) => l.every((v, j) => Object.is(v, shipped.logits[i]![j])));
console.log(`my-re-prefill: copied ${copied}/${content.length}, events ${mine.events.map((e) => `${e.type}@${e.atLength}`).join(' ')}`);
console.log(`same tokens as rePrefill(): ${mine.tokens.join(',') === shipped.tokens.join(',')}; same logits, bit for bit: ${sameLogits}`);
await backend.dispose();
