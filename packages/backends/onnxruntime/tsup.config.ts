import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  shims: true, // import.meta.url in the CJS build (locating onnxruntime-node's native folder)
  target: 'node20',
  // Native addon and protobuf runtime: loaded from node_modules, never bundled.
  external: ['onnxruntime-node', 'onnx-proto'],
});
