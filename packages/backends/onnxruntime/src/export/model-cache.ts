import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackendError, type KvCacheDtype, type ModelConfig, type WeightStore, readDecoderWeights } from '@ropeswitch/core';
import { ExternalDataWriter } from '../onnx/external-data-writer.js';
import { encodeModel } from '../onnx/model-proto.js';
import { EXPORTER_VERSION, buildDecoderModel } from './decoder-graph.js';
import type { QuantizationReport, QuantizationSettings } from './projections.js';
import { type ExportProgress, checkpointBytes, observedSource } from './weight-source.js';

/** File name of the exported graph inside its cache folder. */
export const MODEL_FILE = 'model.onnx';
/** Its weights, as ONNX external data beside it. */
export const DATA_FILE = 'model.onnx.data';
/** What the export wrote and how to check it (see {@link ExportManifest}). */
export const MANIFEST_FILE = 'export.json';

const MANIFEST_FORMAT = 1;
/** Pieces of the data file whose hash the manifest keeps: a cached export is checked by these, not by every byte. */
const SAMPLE_COUNT = 64;
const SAMPLE_BYTES = 64 * 1024;

/** What an export is made of: everything the cache key covers besides the weights. */
export interface ExportSettings {
  readonly config: ModelConfig;
  /** Row slots of the graph. */
  readonly slots: number;
  /** Absent: float32 projections. */
  readonly quantization?: QuantizationSettings;
  /** Element type of the graph's cache inputs (absent: float32). */
  readonly cacheDtype?: KvCacheDtype;
}

/** Where the weights of an export come from. */
export interface ExportSource {
  readonly weights: WeightStore;
  /**
   * The checkpoint folder `weights` were opened from. When given, the cache key is the identity
   * of its weight files (names, sizes, modification times) and the tensors' names, types and
   * shapes, so reopening reads no weight byte; without it the key is a hash of every tensor.
   */
  readonly checkpointDir?: string;
}

/** `export.json`: how an export was made, and sizes and hashes that tell a complete export from a damaged one. */
export interface ExportManifest {
  readonly format: number;
  readonly exporterVersion: number;
  readonly key: string;
  /** What the key hashes about the weights: their files' identity, or their contents. */
  readonly keyedBy: 'files' | 'content';
  /** sha256 of every tensor read (names, shapes, float32 bytes), computed while exporting. */
  readonly contentDigest: string;
  readonly slots: number;
  /** The graph's cache element type (absent in exports made before float16 caches: float32). */
  readonly cacheDtype?: KvCacheDtype;
  readonly quantization: QuantizationReport;
  readonly files: {
    readonly model: { readonly bytes: number; readonly sha256: string };
    readonly data: { readonly bytes: number; readonly sampleSha256: string };
  };
}

/** Where an export lives and whether this call wrote it. */
export interface CachedExport {
  readonly dir: string;
  readonly modelPath: string;
  /** False when an earlier export (this process or another) was reused. */
  readonly created: boolean;
  readonly manifest: ExportManifest;
  /** Why an entry found under the same key was rejected and rebuilt (absent when none was). */
  readonly rebuiltBecause?: string;
}

/** Options of {@link cachedExport}. */
export interface CachedExportOptions {
  /** Folder of exports (default `os.tmpdir()`). */
  readonly cacheDir?: string;
  readonly onProgress?: (progress: ExportProgress) => void;
}

/**
 * The export of (`settings`, `source`) under `cacheDir/ropeswitch-onnx-<key>/`, made now if absent
 * or damaged. An export is written into a temporary folder, weight by weight (each tensor read,
 * laid out or quantized, written to `model.onnx.data`, dropped), then renamed into place, so a
 * folder with the final name is always complete, also when processes race to create it. A found
 * entry is used only if its manifest matches the key and its files match the manifest's sizes,
 * the graph's hash and the hashes of 64 pieces of the data file; otherwise it is deleted and
 * exported again.
 *
 * @throws BackendError `'export-failed'` when the cache folder cannot be written.
 */
export function cachedExport(settings: ExportSettings, source: ExportSource, options: CachedExportOptions = {}): CachedExport {
  const cacheDir = options.cacheDir ?? tmpdir();
  const onProgress = options.onProgress;
  const keyedBy = source.checkpointDir !== undefined ? 'files' : 'content';
  const weightsId = source.checkpointDir !== undefined ? filesFingerprint(source.checkpointDir, source.weights) : contentDigest(settings.config, source.weights, onProgress);
  const key = exportKey(settings, weightsId);
  const dir = join(cacheDir, `ropeswitch-onnx-${key}`);
  const modelPath = join(dir, MODEL_FILE);

  let rebuiltBecause: string | undefined;
  if (existsSync(dir)) {
    onProgress?.({ phase: 'verify', bytesDone: 0, totalBytes: 0 });
    const found = checkExport(dir, key);
    if (typeof found !== 'string') return { dir, modelPath, created: false, manifest: found };
    rebuiltBecause = found;
    discard(dir);
  }
  const partial = `${dir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    mkdirSync(partial, { recursive: true });
    const manifest = writeExport(partial, settings, source.weights, key, keyedBy, onProgress);
    renameSync(partial, dir);
    return { dir, modelPath, created: true, manifest, ...(rebuiltBecause ? { rebuiltBecause } : {}) };
  } catch (cause) {
    try {
      rmSync(partial, { recursive: true, force: true });
    } catch {
      // Nothing was created (e.g. cacheDir is not a folder).
    }
    // Another process finished first: its folder is complete, use it.
    if (existsSync(dir)) {
      const found = checkExport(dir, key);
      if (typeof found !== 'string') return { dir, modelPath, created: false, manifest: found };
    }
    if (cause instanceof BackendError) throw cause;
    throw new BackendError('export-failed', `cannot write the exported model under ${cacheDir} (${String(cause)}); pass a writable cacheDir`, { cause });
  }
}

/** The cache key: exporter version, config, graph settings and the weights' identity, hashed. */
export function exportKey(settings: ExportSettings, weightsId: string): string {
  const { config, slots, quantization, cacheDtype } = settings;
  // float16 caches are another graph; float32 keeps the key it had before they existed (no re-export).
  const cache = cacheDtype === 'float16' ? { cacheDtype } : {};
  return createHash('sha256')
    .update(JSON.stringify({ exporter: EXPORTER_VERSION, config, slots, quantization: quantization ?? null, ...cache }))
    .update(weightsId)
    .digest('hex')
    .slice(0, 20);
}

/**
 * The identity of a checkpoint folder's weights without reading them: every safetensors file and
 * index of `dir` (name, size, modification time in ns) and every tensor's name, dtype and shape.
 */
export function filesFingerprint(dir: string, store: WeightStore): string {
  const hash = createHash('sha256').update('files;');
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')).sort();
  } catch (cause) {
    throw new BackendError('bad-option', `checkpointDir ${dir} cannot be listed (${String(cause)})`, { cause });
  }
  if (files.length === 0) throw new BackendError('bad-option', `checkpointDir ${dir} holds no safetensors file: pass the folder the weights were opened from`);
  for (const f of files) {
    const st = statSync(join(dir, f), { bigint: true });
    hash.update(`${f}:${st.size}:${st.mtimeNs};`);
  }
  for (const name of store.names) {
    const info = store.info(name);
    hash.update(`${name}:${info.dtype}:${info.shape.join('x')};`);
  }
  return hash.digest('hex');
}

/** sha256 of every tensor the decoder reads (what the key uses without a checkpoint folder). */
export function contentDigest(config: ModelConfig, store: WeightStore, onProgress?: (progress: ExportProgress) => void): string {
  const hash = createHash('sha256').update('content;');
  const totalBytes = onProgress ? checkpointBytes(store) : 0;
  let bytesDone = 0;
  // Each layer is dropped as soon as it is hashed.
  readDecoderWeights(
    config,
    observedSource(store, hash, onProgress && ((tensor, bytes) => onProgress({ phase: 'digest', bytesDone: (bytesDone += bytes), totalBytes, tensor }))),
    () => undefined,
  );
  return hash.digest('hex');
}

function writeExport(
  dir: string,
  settings: ExportSettings,
  store: WeightStore,
  key: string,
  keyedBy: ExportManifest['keyedBy'],
  onProgress: ((progress: ExportProgress) => void) | undefined,
): ExportManifest {
  const hash = createHash('sha256');
  const totalBytes = onProgress ? checkpointBytes(store) : 0;
  let bytesDone = 0;
  const source = observedSource(store, hash, onProgress && ((tensor, bytes) => onProgress({ phase: 'export', bytesDone: (bytesDone += bytes), totalBytes, tensor })));
  const writer = new ExternalDataWriter(join(dir, DATA_FILE), DATA_FILE);
  let built: ReturnType<typeof buildDecoderModel>;
  try {
    built = buildDecoderModel(settings.config, source, {
      slots: settings.slots,
      ...(settings.quantization ? { quantization: settings.quantization } : {}),
      ...(settings.cacheDtype ? { cacheDtype: settings.cacheDtype } : {}),
      sink: (t) => writer.add(t),
    });
  } finally {
    writer.close();
  }
  const graph = encodeModel(built.model);
  writeFileSync(join(dir, MODEL_FILE), graph);
  const manifest: ExportManifest = {
    format: MANIFEST_FORMAT,
    exporterVersion: EXPORTER_VERSION,
    key,
    keyedBy,
    contentDigest: hash.digest('hex'),
    slots: built.slots,
    ...(settings.cacheDtype === 'float16' ? { cacheDtype: 'float16' as const } : {}),
    quantization: built.quantization,
    files: {
      model: { bytes: graph.length, sha256: createHash('sha256').update(graph).digest('hex') },
      data: { bytes: writer.bytes, sampleSha256: sampleDigest(join(dir, DATA_FILE), writer.bytes) },
    },
  };
  writeFileSync(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The manifest of a complete, undamaged export under `key`, or why the folder is not one. */
export function checkExport(dir: string, key: string): ExportManifest | string {
  let manifest: ExportManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as ExportManifest;
  } catch (cause) {
    return `${MANIFEST_FILE} is missing or unreadable (${String(cause)})`;
  }
  if (manifest.format !== MANIFEST_FORMAT || manifest.exporterVersion !== EXPORTER_VERSION || manifest.key !== key) {
    return `${MANIFEST_FILE} is for another export (format ${manifest.format}, exporter ${manifest.exporterVersion}, key ${manifest.key})`;
  }
  const model = join(dir, MODEL_FILE);
  const data = join(dir, DATA_FILE);
  const size = (path: string) => (existsSync(path) ? statSync(path).size : -1);
  if (size(model) !== manifest.files?.model?.bytes) return `${MODEL_FILE} has ${size(model)} bytes, the manifest says ${manifest.files?.model?.bytes}`;
  if (size(data) !== manifest.files?.data?.bytes) return `${DATA_FILE} has ${size(data)} bytes, the manifest says ${manifest.files?.data?.bytes}`;
  if (createHash('sha256').update(readFileSync(model)).digest('hex') !== manifest.files.model.sha256) return `${MODEL_FILE} does not match its hash`;
  if (sampleDigest(data, manifest.files.data.bytes) !== manifest.files.data.sampleSha256) return `${DATA_FILE} does not match the hashes of its sampled pieces`;
  return manifest;
}

/**
 * sha256 over the size and 64 pieces of 64 KiB (`SAMPLE_COUNT`, `SAMPLE_BYTES`) spread evenly over
 * the file (first and last included): catches truncated, overwritten or zeroed files at the cost
 * of a few MiB read, not every byte.
 */
export function sampleDigest(path: string, bytes: number): string {
  const hash = createHash('sha256').update(`${bytes};`);
  const piece = new Uint8Array(SAMPLE_BYTES);
  const fd = openSync(path, 'r');
  try {
    const last = Math.max(0, bytes - SAMPLE_BYTES);
    for (let i = 0; i < SAMPLE_COUNT; i++) {
      const at = Math.floor((last * i) / (SAMPLE_COUNT - 1));
      const n = readSync(fd, piece, 0, Math.min(SAMPLE_BYTES, bytes - at), at);
      hash.update(piece.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Moves a damaged entry out of the way (atomically), then deletes it. */
function discard(dir: string): void {
  const aside = `${dir}.corrupt-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    renameSync(dir, aside);
  } catch {
    return; // Another process moved it first.
  }
  rmSync(aside, { recursive: true, force: true });
}
