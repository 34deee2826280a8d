import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendError, type ModelConfig } from '@ropeswitch/core';
import { writeModel } from '../onnx/model-proto.js';
import { EXPORTER_VERSION, buildDecoderModel } from './decoder-graph.js';
import type { ExportWeights } from './export-weights.js';

/** File name of the exported graph inside its cache folder (weights past 1 GiB go to `model.onnx.data` beside it). */
export const MODEL_FILE = 'model.onnx';

/** The cache key of an export: config, weights digest and exporter version, hashed. */
export function exportKey(config: ModelConfig, weights: ExportWeights): string {
  return createHash('sha256')
    .update(JSON.stringify({ exporter: EXPORTER_VERSION, config }))
    .update(weights.digest)
    .digest('hex')
    .slice(0, 20);
}

/** Where an export lives and whether this call wrote it. */
export interface CachedExport {
  readonly dir: string;
  readonly modelPath: string;
  /** False when an earlier export (this process or another) was reused. */
  readonly created: boolean;
}

/**
 * The exported model of (`config`, `weights`) under `cacheDir/ropeswitch-onnx-<key>/`, exported
 * now if absent. The export is written into a temporary folder and renamed into place, so a
 * folder with the final name is always complete, also when processes race to create it.
 */
export function cachedExport(config: ModelConfig, weights: ExportWeights, cacheDir: string = tmpdir()): CachedExport {
  const dir = join(cacheDir, `ropeswitch-onnx-${exportKey(config, weights)}`);
  const modelPath = join(dir, MODEL_FILE);
  if (existsSync(modelPath)) return { dir, modelPath, created: false };
  const partial = `${dir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(partial, { recursive: true });
    writeModel(join(partial, MODEL_FILE), buildDecoderModel(config, weights));
    renameSync(partial, dir);
    return { dir, modelPath, created: true };
  } catch (cause) {
    try {
      rmSync(partial, { recursive: true, force: true });
    } catch {
      // Nothing was created (e.g. cacheDir is not a folder).
    }
    // Another process finished first: its folder is complete, use it.
    if (existsSync(modelPath)) return { dir, modelPath, created: false };
    throw new BackendError('export-failed', `cannot write the exported model under ${cacheDir} (${String(cause)}); pass a writable cacheDir`, { cause });
  }
}
