/// <reference types="@webgpu/types" />
/**
 * @packageDocumentation
 * ropeswitch's WebGPU backend: WGSL kernels over GPU buffers, a KV cache that lives on the device,
 * and an on-device key rerotation, so no cache policy reads the cache back. Browsers pass a
 * `GPUDevice` (or let the backend ask `navigator.gpu`); Node uses `@ropeswitch/backend-webgpu/node`.
 */
export { WebGpuBackend, type WebGpuBackendOptions } from './webgpu-backend.js';
export { GpuKvCache, type GpuCacheHost, type KvHeadBlock } from './gpu-kv-cache.js';
export type { DeviceMatrix, MatrixBlock } from './device-matrix.js';
export type { PassLimits } from './forward-passes.js';
export { readLayerKeys, readLayerValues } from './read-layer.js';
export { type KernelSetName, type AdapterFacts, adapterFacts, describeAdapter, chooseKernelSet } from './kernel-set.js';
export { raisedLimits } from './device-limits.js';
export type { WeightSource } from './weight-source.js';
