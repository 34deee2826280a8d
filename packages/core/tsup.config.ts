import { defineConfig } from 'tsup';

// Two entries: the main one for Node, and `browser` (no file system) for bundlers' `browser`
// condition and the `@ropeswitch/core/browser` subpath. ESM splitting puts their shared modules in
// common chunks, so both entries hand out the same classes (`Session`, the errors).
export default defineConfig({
  entry: ['src/index.ts', 'src/browser.ts'],
  splitting: true,
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
});
