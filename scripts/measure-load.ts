// Writing and loading a checkpoint at the shape users run: `make-model` writes a Phi-3-family
// checkpoint (bf16, HF shards), then a fresh process loads it with `loadCheckpoint` and converts every
// tensor to float32 the way a backend does on open (core's `readDecoderWeights`), and reports time
// and peak RSS beside the converted bytes. Each is set beside its floor, measured in the same run:
// the same bytes of random data written sequentially (the disk's own speed), and a fresh process
// that only reads the shards and fills float32 arrays of the converted tensors' sizes (first-touch
// memory, which on a VM costs a host fault per page). A measurement, not a test:
//   npx tsx scripts/measure-load.ts [--like phi-3-mini-128k] [--layers 32] [--dtype bf16] [--dir DIR] [--keep] [--json]
// The 32-layer Phi-3-mini is 7.6 GB on disk and 15.3 GB converted: it needs ~17 GB of free memory.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, readdirSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type CheckpointDtype, MODEL_LIKES, type ModelLike, makeModel } from '../packages/cli/src/random-models/make-model.js';
import { loadCheckpoint, readDecoderWeights } from '../packages/core/src/index.js';

const { values } = parseArgs({
  options: {
    like: { type: 'string' },
    layers: { type: 'string' },
    dtype: { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean' },
    json: { type: 'boolean' },
    child: { type: 'string' },
    floor: { type: 'boolean' },
  },
});
const GB = 1e9;
const peakRss = () => process.resourceUsage().maxRSS * 1024;

if (values.child !== undefined && values.floor !== undefined) {
  // The load's floor: read every shard once, and fill fresh float32 arrays as large as the converted tensors.
  const checkpoint = await loadCheckpoint(values.child);
  const t0 = performance.now();
  const piece = new Uint8Array(8 * 1024 * 1024);
  for (const file of readdirSync(values.child).filter((f) => f.endsWith('.safetensors'))) {
    const fd = openSync(join(values.child, file), 'r');
    while (readSync(fd, piece, 0, piece.length, null) > 0);
    closeSync(fd);
  }
  const readSeconds = (performance.now() - t0) / 1000;
  const kept: Float32Array[] = [];
  const t1 = performance.now();
  for (const name of checkpoint.weights.names) {
    const a = new Uint32Array(checkpoint.weights.info(name).shape.reduce((x, y) => x * y, 1));
    for (let i = 0; i < a.length; i++) a[i] = i << 16;
    kept.push(new Float32Array(a.buffer));
  }
  const fillSeconds = (performance.now() - t1) / 1000;
  process.stdout.write(`${JSON.stringify({ readSeconds, fillSeconds, peakRssBytes: peakRss() })}\n`);
  process.exit(0);
}

if (values.child !== undefined) {
  // The loading side, in a process of its own so its peak RSS is the load's alone.
  const baseline = process.memoryUsage().rss;
  const t0 = performance.now();
  let lastReport = 0;
  const checkpoint = await loadCheckpoint(values.child, {
    onProgress: (p) => {
      if (p.bytesRead - lastReport > p.totalBytes / 10 || p.bytesRead === p.totalBytes) {
        lastReport = p.bytesRead;
        process.stderr.write(`  load ${((100 * p.bytesRead) / p.totalBytes).toFixed(0)}%\n`);
      }
    },
  });
  const weights = readDecoderWeights(checkpoint.config, checkpoint.weights);
  const seconds = (performance.now() - t0) / 1000;
  await checkpoint.weights.close();
  let converted = weights.embed.byteLength + weights.finalNorm.byteLength + (weights.lmHead === weights.embed ? 0 : weights.lmHead.byteLength);
  for (const l of weights.layers) for (const t of Object.values(l)) if (t instanceof Float32Array) converted += t.byteLength;
  process.stdout.write(`${JSON.stringify({ seconds, convertedBytes: converted, peakRssBytes: peakRss(), baselineRssBytes: baseline })}\n`);
  process.exit(0);
}

const like = (values.like ?? 'phi-3-mini-128k') as ModelLike;
if (!MODEL_LIKES.includes(like)) throw new Error(`--like: one of ${MODEL_LIKES.join(', ')}`);
const layers = Number(values.layers ?? 32);
const dtype = (values.dtype ?? 'bf16') as CheckpointDtype;
const dir = values.dir ?? join(await mkdtemp(join(tmpdir(), 'ropeswitch-measure-load-')), 'model');

const t0 = performance.now();
const made = await makeModel(dir, { like, layers, dtype, seed: 1 });
const writeSeconds = (performance.now() - t0) / 1000;
const write = { seconds: writeSeconds, fileBytes: made.checkpoint.fileBytes, shards: made.checkpoint.shards.length, peakRssBytes: peakRss() };

// The disk's floor: as many random bytes, written sequentially in 8 MiB pieces (random: some virtual
// disks store zeros faster than data).
const floorFile = join(dir, '..', 'disk-floor.bin');
const random = randomFillSync(new Uint8Array(64 * 1024 * 1024));
const t1 = performance.now();
const fd = openSync(floorFile, 'w');
for (let done = 0; done < write.fileBytes; ) {
  const n = Math.min(write.fileBytes - done, 8 * 1024 * 1024);
  writeSync(fd, random, done % random.length, n);
  done += n;
}
closeSync(fd);
const diskFloorSeconds = (performance.now() - t1) / 1000;
await rm(floorFile, { force: true });

const script = fileURLToPath(import.meta.url);
const child = (args: string[]) => {
  const out = execFileSync(process.execPath, [...process.execArgv, script, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
};
const load = child(['--child', dir]) as { seconds: number; convertedBytes: number; peakRssBytes: number; baselineRssBytes: number };
const loadFloor = child(['--child', dir, '--floor']) as { readSeconds: number; fillSeconds: number; peakRssBytes: number };
if (!values.keep && values.dir === undefined) await rm(join(dir, '..'), { recursive: true, force: true });

const result = {
  machine: `${cpus()[0]?.model.trim() ?? 'unknown cpu'} × ${cpus().length}, node ${process.version}`,
  model: `${like}, ${layers} layers, ${dtype}`,
  parameters: made.parameters,
  write,
  diskFloorSeconds,
  load,
  loadFloor,
  writeOverFloor: write.seconds / diskFloorSeconds,
  loadOverFloor: load.seconds / (loadFloor.readSeconds + loadFloor.fillSeconds),
  loadPeakOverConverted: load.peakRssBytes / load.convertedBytes,
};
if (values.json) {
  console.log(JSON.stringify(result, null, 2));
} else {
  console.log(`machine: ${result.machine}\nmodel: ${result.model} (${(made.parameters / 1e9).toFixed(2)}B parameters)\n`);
  const mbs = (bytes: number, s: number) => `${(bytes / 1e6 / s).toFixed(0)} MB/s`;
  console.log('| step | bytes | time | rate | ÷ its floor | peak RSS | peak RSS / converted weights |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  console.log(`| make-model (${write.shards} shards) | ${(write.fileBytes / GB).toFixed(2)} GB on disk | ${write.seconds.toFixed(1)} s | ${mbs(write.fileBytes, write.seconds)} | ${result.writeOverFloor.toFixed(2)} | ${(write.peakRssBytes / GB).toFixed(2)} GB | – |`);
  console.log(`| floor: random bytes written sequentially | ${(write.fileBytes / GB).toFixed(2)} GB | ${diskFloorSeconds.toFixed(1)} s | ${mbs(write.fileBytes, diskFloorSeconds)} | 1 | – | – |`);
  console.log(
    `| loadCheckpoint + float32 conversion | ${(load.convertedBytes / GB).toFixed(2)} GB converted | ${load.seconds.toFixed(1)} s | ${mbs(write.fileBytes, load.seconds)} read | ${result.loadOverFloor.toFixed(2)} | ${(load.peakRssBytes / GB).toFixed(2)} GB | ${result.loadPeakOverConverted.toFixed(3)} |`,
  );
  console.log(
    `| floor: read the shards + fill fresh float32 arrays | ${(load.convertedBytes / GB).toFixed(2)} GB | ${loadFloor.readSeconds.toFixed(1)} + ${loadFloor.fillSeconds.toFixed(1)} s | – | 1 | ${(loadFloor.peakRssBytes / GB).toFixed(2)} GB | – |`,
  );
}
