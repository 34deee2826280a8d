// Vite config of the WebGPU browser example. The `@ropeswitch/*` packages resolve to their
// TypeScript sources, `@ropeswitch/core` to its browser entry (no file system), so the page builds
// from a fresh clone without `pnpm -r run build` and always runs the code in the tree. The model
// files are served from `packages/cli/assets/copy-longrope/` (dev server) and copied into the build
// (`vite build`) under `models/copy-longrope/`, so the repository holds them once.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Plugin, defineConfig } from 'vite';

const fromRepo = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** URL prefix of the model files in the page, and the folder they come from. */
const MODEL_URL = 'models/copy-longrope/';
const MODEL_DIR = fromRepo('packages/cli/assets/copy-longrope/');
const MODEL_FILES: Readonly<Record<string, string>> = {
  'config.json': 'application/json',
  'model.safetensors': 'application/octet-stream',
};

/** Serves the model files from the dev server, and emits them as assets in `vite build` (so `vite preview` has them too). */
function copyLongropeModel(): Plugin {
  return {
    name: 'ropeswitch-copy-longrope-model',
    configureServer(server) {
      server.middlewares.use((request, response, next) => {
        const path = (request.url ?? '').split('?')[0]!;
        const file = path.startsWith(`/${MODEL_URL}`) ? path.slice(MODEL_URL.length + 1) : undefined;
        const type = file === undefined ? undefined : MODEL_FILES[file];
        if (file === undefined || type === undefined) return next();
        response.setHeader('content-type', type);
        response.end(readFileSync(`${MODEL_DIR}${file}`));
      });
    },
    generateBundle() {
      for (const file of Object.keys(MODEL_FILES)) {
        this.emitFile({ type: 'asset', fileName: `${MODEL_URL}${file}`, source: readFileSync(`${MODEL_DIR}${file}`) });
      }
    },
  };
}

const source = (path: string) => fromRepo(`packages/${path}`);

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  resolve: {
    // Exact matches: `@ropeswitch/backend-webgpu/node` must not resolve here (it is Node-only).
    alias: [
      { find: /^@ropeswitch\/core$/, replacement: source('core/src/browser.ts') },
      { find: /^@ropeswitch\/policies$/, replacement: source('policies/src/index.ts') },
      { find: /^@ropeswitch\/backend-reference$/, replacement: source('backends/reference/src/index.ts') },
      { find: /^@ropeswitch\/backend-webgpu$/, replacement: source('backends/webgpu/src/index.ts') },
    ],
  },
  plugins: [copyLongropeModel()],
  server: { fs: { allow: [fromRepo('.')] } },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true, reportCompressedSize: false },
});
