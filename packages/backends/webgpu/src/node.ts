/// <reference types="@webgpu/types" />
/**
 * @packageDocumentation
 * Node entry of the WebGPU backend: finds a device through Dawn (the `webgpu` npm package) — a real
 * GPU when there is one, else Mesa's llvmpipe through Dawn's OpenGL ES path — and builds the backend
 * on it. Kept apart from the main entry so browser bundles never import Dawn.
 */
import { BackendError, type ModelConfig } from '@ropeswitch/core';
import { create } from 'webgpu';
import { raisedLimits } from './device-limits.js';
import { vulkanLoaderPresent } from './vulkan-loader.js';
import { adapterFacts, describeAdapter } from './kernel-set.js';
import type { WeightSource } from './weight-source.js';
import { WebGpuBackend, type WebGpuBackendOptions } from './webgpu-backend.js';

/** Options of {@link requestNodeGpuDevice}. */
export interface NodeGpuDeviceOptions {
  /**
   * `auto` (default): a real GPU if Dawn finds one, else the software adapter; `gpu`: a real GPU or
   * fail; `software`: llvmpipe through OpenGL ES even where a GPU exists.
   */
  readonly adapter?: 'auto' | 'gpu' | 'software';
}

/** A device and what it runs on. */
export interface NodeGpuDevice {
  readonly device: GPUDevice;
  /** E.g. `mesa llvmpipe (LLVM 15.0.7, 256 bits) [software] via Dawn OpenGL ES`. */
  readonly adapterDescription: string;
  /** True on the software (CPU) adapter. */
  readonly software: boolean;
}

type DawnGpu = ReturnType<typeof create>;

// Dawn's GPU objects must outlive every device made from them: if one is garbage-collected while a
// device lives the process crashes. They are made once and held here for the life of the process.
let nativeGpu: DawnGpu | undefined;
let softwareGpu: DawnGpu | undefined;

/**
 * Requests a WebGPU device in Node. Tries the default Dawn backend (Vulkan, Metal, D3D12) with a
 * high-performance adapter first, then Mesa's llvmpipe through Dawn's OpenGL ES backend in
 * compatibility mode (needs `EGL_PLATFORM=surfaceless` without a display, set here when unset).
 * Limits the kernels lean on are raised to the adapter's maxima.
 * @throws BackendError `'no-webgpu'` when no adapter is found (no GPU driver and no Mesa).
 */
export async function requestNodeGpuDevice(options: NodeGpuDeviceOptions = {}): Promise<NodeGpuDevice> {
  const mode = options.adapter ?? 'auto';
  // `auto` skips the GPU probe where Linux has no Vulkan loader (no GPU driver): Dawn would only print a warning.
  if (mode === 'gpu' || (mode === 'auto' && vulkanLoaderPresent())) {
    nativeGpu ??= create([]);
    const adapter = await nativeGpu.requestAdapter({ powerPreference: 'high-performance' });
    if (adapter) {
      const facts = adapterFacts(adapter.info);
      // Dawn may offer SwiftShader (a CPU Vulkan) as its default: that is software too.
      if (mode === 'gpu' || !facts.software) {
        const device = await adapter.requestDevice({ requiredLimits: raisedLimits(adapter) });
        return { device, adapterDescription: `${describeAdapter(facts)} via Dawn`, software: facts.software };
      }
    }
    if (mode === 'gpu') throw new BackendError('no-webgpu', 'Dawn found no GPU adapter (no Vulkan/Metal/D3D12 driver?); use adapter: "software" for Mesa llvmpipe');
  }
  process.env['EGL_PLATFORM'] ??= 'surfaceless';
  softwareGpu ??= create(['backend=opengles']);
  const adapter = await softwareGpu.requestAdapter({ featureLevel: 'compatibility' });
  if (!adapter) {
    throw new BackendError(
      'no-webgpu',
      'no WebGPU adapter: Dawn found no GPU and no OpenGL ES driver; install Mesa (e.g. Debian: libegl1 libgles2 libgl1-mesa-dri) for the llvmpipe software adapter',
    );
  }
  const facts = adapterFacts(adapter.info, true);
  const device = await adapter.requestDevice({ requiredLimits: raisedLimits(adapter) });
  return { device, adapterDescription: `${describeAdapter(facts)} via Dawn OpenGL ES`, software: true };
}

/** Options of {@link createNodeWebGpuBackend}: the backend's own plus how to find the device. */
export interface NodeWebGpuBackendOptions extends Omit<WebGpuBackendOptions, 'device' | 'adapterDescription' | 'software'>, NodeGpuDeviceOptions {}

/**
 * A {@link WebGpuBackend} on a device of its own (see {@link requestNodeGpuDevice}); `dispose`
 * destroys the device. `backend.deviceDescription` names the adapter and kernel set.
 */
export async function createNodeWebGpuBackend(config: ModelConfig, weights: WeightSource, options: NodeWebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  const { device, adapterDescription, software } = await requestNodeGpuDevice(options);
  try {
    return await WebGpuBackend.create(config, weights, {
      ...options,
      device,
      adapterDescription,
      software,
      destroyDeviceOnDispose: options.destroyDeviceOnDispose ?? true,
    });
  } catch (error) {
    device.destroy();
    throw error;
  }
}

export { WebGpuBackend, type WebGpuBackendOptions } from './webgpu-backend.js';
