// The reference backend's WebAssembly SIMD kernels (built by `pnpm run build` with AssemblyScript
// into src/kernels/wasm/generated/, four ways: plain or relaxed SIMD, over an unshared or a shared
// memory). Every pointer is a byte offset into the imported memory, which the backend's arena
// manages from JavaScript; the kernels allocate nothing and keep no state, so any number of
// instances (one per thread) can run on one shared memory.
export { linear } from './matmul';
export { attention } from './attention';
export { swiglu, addInPlace } from './elementwise';
export { rotate } from './rotate';
