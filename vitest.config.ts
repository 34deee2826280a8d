import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import SummaryLineReporter from './test/support/summary-line-reporter.js';

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests import workspace packages from source, so they run without a build;
// only the CLI tests that spawn the `ropeswitch` binary need `pnpm run build` first.
export default defineConfig({
  resolve: {
    alias: {
      '@ropeswitch/core': src('./packages/core/src/index.ts'),
      '@ropeswitch/policies': src('./packages/policies/src/index.ts'),
      '@ropeswitch/backend-reference': src('./packages/backends/reference/src/index.ts'),
      '@ropeswitch/backend-onnxruntime': src('./packages/backends/onnxruntime/src/index.ts'),
      // The more specific subpath first: an alias also matches as a path prefix.
      '@ropeswitch/backend-webgpu/node': src('./packages/backends/webgpu/src/node.ts'),
      '@ropeswitch/backend-webgpu': src('./packages/backends/webgpu/src/index.ts'),
      // The private test fixtures (never built), subpath first for the same reason.
      '@ropeswitch/testkit/vitest': src('./packages/testkit/src/vitest.ts'),
      '@ropeswitch/testkit': src('./packages/testkit/src/index.ts'),
    },
  },
  test: {
    include: ['packages/**/src/**/*.test.ts', 'test/**/*.test.ts'],
    reporters: ['default', new SummaryLineReporter()],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
