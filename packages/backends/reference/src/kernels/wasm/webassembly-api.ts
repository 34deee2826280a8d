// The part of the WebAssembly JS API the kernels use, typed here: the workspace compiles without
// the DOM lib, and @types/node does not declare these.

/** A `WebAssembly.Memory`; `buffer` is a `SharedArrayBuffer` for a shared one. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Grows by `pages` pages of 64 KiB (throws a RangeError past the limit); detaches an unshared `buffer`. */
  grow(pages: number): number;
}

/** A compiled module (structured-cloneable to workers). */
export type WasmModule = object;

/** A module instance. */
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WebAssemblyApi {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => WasmInstance;
  compile(bytes: Uint8Array): Promise<WasmModule>;
  instantiate(bytes: Uint8Array, imports: Record<string, Record<string, unknown>>): Promise<{ instance: WasmInstance; module: WasmModule }>;
  instantiate(module: WasmModule, imports: Record<string, Record<string, unknown>>): Promise<WasmInstance>;
  validate(bytes: Uint8Array): boolean;
}

/** The runtime's `WebAssembly` global (Node ≥ 16 and every current browser have it). */
export const webAssembly = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** wasm32's ceiling in 64 KiB pages (4 GiB). */
export const MAX_PAGES = 65536;
