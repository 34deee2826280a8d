// The reference backend's WebAssembly SIMD kernels (built by `pnpm run build` with AssemblyScript
// into src/kernels/wasm/generated/). Every pointer is a byte offset into the imported memory, which
// the backend's arena manages from JavaScript; the kernels allocate nothing.
export { linear } from './matmul';
export { attention } from './attention';
export { swiglu, addInPlace } from './elementwise';
export { rotate } from './rotate';
