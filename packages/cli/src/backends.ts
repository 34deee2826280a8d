import { createHash, randomBytes } from 'node:crypto';
import { access, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assetPath } from './assets.js';
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { type Backend, type LoadProgress, type ModelConfig, type TextTokenizer, type WeightStore, loadCheckpoint } from '@ropeswitch/core';
import type { BackendSettings } from './backend-flags.js';
import { createByteProgress } from './byte-progress.js';
import type { CommandIO } from './io.js';
import { type TinyModelOptions, makeTinyModel, tinyModelConfig } from './random-models/make-tiny-model.js';

/**
 * Backends the command line can open, by `--backend` name: `reference` (TypeScript + WebAssembly
 * kernels), `onnxruntime` (onnxruntime-node, CPU provider), `webgpu` (Dawn: a real GPU when
 * present, else Mesa's software rasterizer).
 */
export const BACKEND_NAMES = ['reference', 'onnxruntime', 'webgpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Where the weights an opener gets come from. */
interface WeightsSource {
  /** The checkpoint folder (onnxruntime keys its export cache by its files). */
  readonly dir: string;
  /** Follows the weights as the backend reads them (onnxruntime: while it hashes or exports them). */
  readonly onProgress?: (progress: LoadProgress) => void;
}

/**
 * How each backend opens a model. The ONNX Runtime and WebGPU packages load native addons, so they
 * are imported only when asked for. The weights may be closed once the returned promise settles.
 */
const BACKEND_OPENERS: Record<BackendName, (config: ModelConfig, weights: WeightStore, settings: BackendSettings, source: WeightsSource) => Promise<Backend>> = {
  reference: async (config, weights, settings) =>
    new ReferenceBackend(config, weights, {
      ...(settings.threads !== undefined ? { threads: settings.threads } : {}),
      ...(settings.weights !== undefined ? { weights: settings.weights } : {}),
    }),
  onnxruntime: async (config, weights, settings, source) => {
    const { OnnxRuntimeBackend } = await import('@ropeswitch/backend-onnxruntime');
    const onProgress = source.onProgress;
    return OnnxRuntimeBackend.open(config, weights, {
      checkpointDir: source.dir,
      ...(settings.threads !== undefined ? { threads: settings.threads } : {}),
      ...(settings.quantize !== undefined ? { quantize: settings.quantize } : {}),
      ...(settings.cacheDtype !== undefined ? { cacheDtype: settings.cacheDtype } : {}),
      ...(settings.rowsPerRun !== undefined ? { rowsPerRun: settings.rowsPerRun } : {}),
      ...(onProgress
        ? { onProgress: (p) => p.tensor !== undefined && onProgress({ bytesRead: p.bytesDone, totalBytes: p.totalBytes, tensor: p.tensor }) }
        : {}),
    });
  },
  webgpu: async (config, weights) => {
    const { createNodeWebGpuBackend } = await import('@ropeswitch/backend-webgpu/node');
    return createNodeWebGpuBackend(config, weights);
  },
};

/**
 * Models `--model` knows by name: `builtin`, a make-tiny model at Phi-3's real threshold (L = 4096,
 * generated on first use); `trained`, the shipped copy-task model (L = 64). Anything else is a folder.
 */
export const MODEL_NAMES = ['builtin', 'trained'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

/** The trained copy-task model shipped with the CLI (see assets/copy-longrope/README.md). */
export const TRAINED_MODEL_DIR = assetPath('copy-longrope/');

/**
 * The `builtin` model: make-tiny's default shape (2 layers, hidden 64, vocab 128) with Phi-3's
 * L = 4096 and M = 131072, fixed seed. Random weights: for cost and logit comparisons, not text.
 */
export const BUILTIN_MODEL: TinyModelOptions = Object.freeze({ seed: 1, originalMax: 4096, maxPositions: 131072 });

/** The `builtin` model of `bench --quick`: the same shape with L = 256 (M/L = 32 as Phi-3), so a run takes seconds. */
export const BUILTIN_QUICK_MODEL: TinyModelOptions = Object.freeze({ seed: 1, originalMax: 256, maxPositions: 8192 });

/** Bumped when make-tiny's weights change for the same options, so stale generated folders are not reused. */
const BUILTIN_FORMAT = 1;

/**
 * The folder of a generated make-tiny model, `os.tmpdir()/ropeswitch-builtin-<key>/`, written on
 * first use and reused afterwards. The key hashes the options, so every variant has its own folder.
 * The model is written under a temporary name and renamed into place: a folder with the final name
 * is always complete, also when several processes race to create it.
 */
export async function builtinModelDir(options: TinyModelOptions = BUILTIN_MODEL): Promise<string> {
  const key = createHash('sha256')
    .update(JSON.stringify({ format: BUILTIN_FORMAT, config: tinyModelConfig(options), seed: options.seed ?? 0, dtype: options.dtype ?? 'f32' }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(tmpdir(), `ropeswitch-builtin-${key}`);
  if (await exists(join(dir, 'model.safetensors'))) return dir;
  const partial = `${dir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await makeTinyModel(partial, options);
    await rename(partial, dir);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    // Another process finished first: its folder is complete, use it.
    if (!(await exists(join(dir, 'model.safetensors')))) throw error;
  }
  return dir;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** `--model builtin` (generated, see {@link builtinModelDir}; `quick` picks the L = 256 variant), `trained`, or a folder. */
export async function resolveModelDir(model: string, options: { quick?: boolean } = {}): Promise<string> {
  if (model === 'trained') return TRAINED_MODEL_DIR;
  if (model === 'builtin') return builtinModelDir(options.quick ? BUILTIN_QUICK_MODEL : BUILTIN_MODEL);
  return model;
}

/** How the command line opens a model. */
export interface OpenModelOptions {
  /** Backend flags of the command line (`--threads`, …). */
  readonly settings?: BackendSettings;
  /** Follows the weights as the backend reads and converts them. */
  readonly onProgress?: (progress: LoadProgress) => void;
}

/** Loads the model folder into the named backend. */
export async function openBackend(name: BackendName, modelDir: string, options: OpenModelOptions = {}): Promise<Backend> {
  return (await openModel(name, modelDir, options)).backend;
}

/** A model folder opened for the command line: its backend and, when the folder has one, its tokenizer. */
export interface OpenModel {
  readonly backend: Backend;
  readonly tokenizer?: TextTokenizer;
}

/** Loads the model folder into the named backend, with its tokenizer when it has a `tokenizer.json`. */
export async function openModel(name: BackendName, modelDir: string, options: OpenModelOptions = {}): Promise<OpenModel> {
  const checkpoint = await loadCheckpoint(modelDir, options.onProgress ? { onProgress: options.onProgress } : {});
  try {
    const backend = await BACKEND_OPENERS[name](checkpoint.config, checkpoint.weights, options.settings ?? {}, {
      dir: modelDir,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return checkpoint.tokenizer ? { backend, tokenizer: checkpoint.tokenizer } : { backend };
  } finally {
    await checkpoint.weights.close();
  }
}

/** {@link openModel} for a command: a loading bar on a terminal while the backend reads the weights. */
export async function openModelForCommand(name: BackendName, modelDir: string, io: CommandIO, settings: BackendSettings): Promise<OpenModel> {
  const progress = createByteProgress(io.stderr, io.isTTY === true, `loading ${name}`);
  try {
    return await openModel(name, modelDir, { settings, onProgress: (p) => progress.update(p.bytesRead, p.totalBytes) });
  } finally {
    progress.finish();
  }
}
