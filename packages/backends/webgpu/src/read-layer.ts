/// <reference types="@webgpu/types" />
import { CacheError, type KvCache } from '@ropeswitch/core';
import { BufferUsage, MapMode } from './gpu-flags.js';
import { GpuKvCache, type KvHeadBlock, headAt } from './gpu-kv-cache.js';

/**
 * Reads the keys of one layer of a WebGPU cache back to the CPU, `[kvHead][index][headDim]` over
 * its `length` indices (the layout the conformance suite's CPU reader returns). For tests and
 * debugging: the backend itself never reads a cache back.
 */
export function readLayerKeys(cache: KvCache, layer: number): Promise<Float32Array> {
  const c = asGpuCache(cache);
  return readHeads(c, c.keys(layer));
}

/** Like {@link readLayerKeys}, for the values. */
export function readLayerValues(cache: KvCache, layer: number): Promise<Float32Array> {
  const c = asGpuCache(cache);
  return readHeads(c, c.values(layer));
}

async function readHeads(cache: GpuKvCache, blocks: readonly KvHeadBlock[]): Promise<Float32Array> {
  const { numKvHeads, headDim } = cache.layout;
  const n = cache.length;
  const bytes = n * headDim * 4;
  if (bytes === 0) return new Float32Array(0);
  const device = cache.host.device;
  const staging = device.createBuffer({ size: numKvHeads * bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  try {
    const encoder = device.createCommandEncoder();
    for (let h = 0; h < numKvHeads; h++) {
      const at = headAt(blocks, h, cache.capacity * headDim * 4);
      encoder.copyBufferToBuffer(at.buffer, at.offset, staging, h * bytes, bytes);
    }
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(MapMode.READ);
    return new Float32Array(staging.getMappedRange().slice(0));
  } finally {
    staging.destroy();
  }
}

function asGpuCache(cache: KvCache): GpuKvCache {
  if (!(cache instanceof GpuKvCache)) throw new CacheError('foreign-cache', `readLayerKeys reads WebGPU caches; got a ${cache.location} cache of another kind`);
  return cache;
}
