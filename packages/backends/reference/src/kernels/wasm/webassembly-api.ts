// The part of the WebAssembly JS API the kernels use, typed here: the workspace compiles without
// the DOM lib, and @types/node does not declare these.

/** A `WebAssembly.Memory`. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  /** Grows by `pages` pages of 64 KiB (throws a RangeError past the limit); detaches `buffer`. */
  grow(pages: number): number;
}

interface WebAssemblyApi {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  instantiate(bytes: Uint8Array, imports: Record<string, Record<string, unknown>>): Promise<{ instance: { exports: Record<string, unknown> } }>;
}

/** The runtime's `WebAssembly` global (Node ≥ 16 and every current browser have it). */
export const webAssembly = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;
