// Parse an HF config, build its RoPE schedule and look at the regimes around the threshold:
// which lengths switch LongRoPE from short to long factors, and how far a cached key must turn.
import { makeTinyModel } from '@ropeswitch/cli';
import { createRopeSchedule, loadModelConfig, rerotationTables } from '@ropeswitch/core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = await mkdtemp(join(tmpdir(), 'ropeswitch-example-'));
await makeTinyModel(dir, { seed: 7 }); // Phi-3 layout, threshold 4096, max positions 131072
const config = await loadModelConfig(dir);
const schedule = createRopeSchedule(config.rope);
for (const length of [4095, 4096, 4097]) {
  const r = schedule.regimeFor(length);
  console.log(`S = ${length}: ${r.id}, ω0 = ${r.invFreq[0]}, m = ${r.attentionFactor.toFixed(6)}`);
}
// The turn that moves the key at position 4000 from the short to the long regime (pair 1).
const delta = rerotationTables(schedule.regimeFor(1), schedule.regimeFor(4097), [4000]);
console.log(`rerotation at p = 4000, pair 1: cos ${delta.cos[1]!.toFixed(6)} sin ${delta.sin[1]!.toFixed(6)}`);
await rm(dir, { recursive: true });
