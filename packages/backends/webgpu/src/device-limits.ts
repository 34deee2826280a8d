/// <reference types="@webgpu/types" />
import { BackendError } from '@ropeswitch/core';

/**
 * Limits the backend raises to what the adapter offers when it requests a device itself: larger
 * storage bindings for long caches and big matrices, more storage buffers per stage (compatibility
 * mode defaults to 4), bigger workgroups.
 */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupStorageSize',
] as const;

/** `requiredLimits` for `adapter.requestDevice`: the adapter's own maxima of the limits the backend leans on. */
export function raisedLimits(adapter: GPUAdapter): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof v === 'number' && v > 0) out[name] = v;
  }
  return out;
}

/** What the kernels need of a device (a caller's device may have been requested with low limits). */
export function checkDeviceLimits(device: GPUDevice): void {
  const l = device.limits;
  const need: [string, number, number][] = [
    ['maxStorageBuffersPerShaderStage', l.maxStorageBuffersPerShaderStage, 4],
    ['maxComputeInvocationsPerWorkgroup', l.maxComputeInvocationsPerWorkgroup, 64],
    ['maxComputeWorkgroupSizeX', l.maxComputeWorkgroupSizeX, 64],
    ['maxComputeWorkgroupStorageSize', l.maxComputeWorkgroupStorageSize, 8192],
  ];
  for (const [name, have, want] of need) {
    if (have < want) {
      throw new BackendError('device-limits', `the WebGPU device has ${name} = ${have}; the kernels need at least ${want}: request the device with requiredLimits from adapter.limits (see raisedLimits)`);
    }
  }
}
