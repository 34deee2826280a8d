import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { BackendError } from '@ropeswitch/core';
import { listSupportedBackends } from 'onnxruntime-node';
import type { ExecutionProviderName } from './options.js';

const PROVIDERS: readonly ExecutionProviderName[] = ['cpu', 'cuda', 'webgpu'];

/** How a user gets onnxruntime-node's CUDA provider, which its install script downloads. */
export const CUDA_HOWTO =
  "onnxruntime-node ships its CUDA provider outside the npm package: its install script downloads it (CUDA 12, linux/x64), " +
  "and this workspace disables that script (pnpm-workspace.yaml `allowBuilds: onnxruntime-node: false`). To enable it, set " +
  "`allowBuilds: onnxruntime-node: true` (pnpm; npm and yarn run install scripts by default) and reinstall, or run " +
  "`node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12` once; the machine needs an NVIDIA driver and CUDA 12 / cuDNN 9 libraries";

/** The folder holding onnxruntime-node's native libraries for this platform. */
function nativeDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/**
 * Checks that onnxruntime-node can run `provider` here, before any model is exported.
 * @throws BackendError `'bad-option'` for an unknown provider, `'provider-unavailable'` with the
 * way to enable it otherwise.
 */
export function checkExecutionProvider(provider: string): ExecutionProviderName {
  if (!(PROVIDERS as readonly string[]).includes(provider)) {
    throw new BackendError('bad-option', `executionProvider '${provider}' is not one of ${PROVIDERS.join(', ')}`);
  }
  const name = provider as ExecutionProviderName;
  if (name === 'cpu') return name;
  const listed = listSupportedBackends().find((b) => b.name === name);
  if (!listed) {
    throw new BackendError('provider-unavailable', `onnxruntime-node on ${process.platform}/${process.arch} has no ${name} execution provider; use executionProvider 'cpu'`);
  }
  if (name === 'cuda' && !existsSync(join(nativeDir(), process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so'))) {
    throw new BackendError('provider-unavailable', `the CUDA execution provider is not installed. ${CUDA_HOWTO}`);
  }
  return name;
}

/** Wraps a session-creation failure of a non-CPU provider (no GPU, no driver) in a typed error. */
export function providerStartError(provider: ExecutionProviderName, cause: unknown): BackendError {
  const how = provider === 'cuda' ? CUDA_HOWTO : 'the WebGPU provider needs a GPU adapter Dawn can open (Vulkan on Linux, D3D12 on Windows, Metal on macOS)';
  return new BackendError('provider-unavailable', `onnxruntime could not start the ${provider} execution provider (${String(cause)}); ${how}`, { cause });
}
