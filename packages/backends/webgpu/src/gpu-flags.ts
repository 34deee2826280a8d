/**
 * WebGPU's buffer-usage and map-mode bits, spelled out: Node has no `GPUBufferUsage` global unless
 * someone installs Dawn's, and this package must not depend on that.
 */
export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
} as const;

export const MapMode = { READ: 0x0001 } as const;

/** Storage buffers every pass reads or writes. */
export const STORAGE_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
