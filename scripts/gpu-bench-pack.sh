#!/usr/bin/env bash
# scripts/gpu-bench-pack.sh: readies this built repository to be carried to a GPU machine that may
# have no Node and no package registry, for scripts/gpu-bench.sh. Run it where the repository was
# installed and built (pnpm install && pnpm -r run build), on the same OS and CPU architecture as
# the GPU machine (Node and Dawn are native binaries; Node needs glibc and libstdc++ there).
#
#   scripts/gpu-bench-pack.sh              # copies this Node (≥ 20) to .tmp/node/bin/node
#   scripts/gpu-bench-pack.sh --tar FILE   # … and writes FILE (.tar.gz): the repository without
#                                          # .git, bench-out and docs-site, with node_modules, the
#                                          # dist folders and .tmp/node (≈ 650 MB before gzip)
#
# On the GPU machine: tar -xzf FILE -C somewhere && somewhere/scripts/gpu-bench.sh --quick
set -euo pipefail
cd "$(dirname "$0")/.."

tar_file=""
case "${1:-}" in
  "") ;;
  --tar) [ $# -ge 2 ] || { echo "gpu-bench-pack: --tar needs a file name" >&2; exit 2; }; tar_file="$2" ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "gpu-bench-pack: unknown option '$1' (see --help)" >&2; exit 2 ;;
esac

node_bin="${ROPESWITCH_NODE:-$(command -v node || true)}"
if [ -z "$node_bin" ] || ! "$node_bin" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "gpu-bench-pack: needs Node 20 or newer on PATH (or \$ROPESWITCH_NODE)" >&2
  exit 1
fi
for f in packages/cli/dist/bin.js packages/core/dist/index.js packages/backends/webgpu/dist/index.js packages/backends/webgpu/dist/node.js packages/backends/webgpu/node_modules/webgpu/package.json; do
  [ -e "$f" ] || { echo "gpu-bench-pack: $f is missing: run pnpm install && pnpm -r run build first" >&2; exit 1; }
done

# The real file behind a version manager's shim or a symlink: process.execPath.
mkdir -p .tmp/node/bin
cp "$("$node_bin" -p process.execPath)" .tmp/node/bin/node
chmod +x .tmp/node/bin/node
echo "gpu-bench-pack: .tmp/node/bin/node is Node $(.tmp/node/bin/node -p process.version) ($(uname -s) $(uname -m))"

if [ -n "$tar_file" ]; then
  case "$tar_file" in /*) ;; *) tar_file="$(pwd)/$tar_file" ;; esac
  plain="${tar_file%.gz}"
  [ "$plain" != "$tar_file" ] || plain="$tar_file.tar"
  # .tmp holds scratch files besides node: leave them out, then add .tmp/node alone.
  tar -cf "$plain" --exclude=./.git --exclude=./bench-out --exclude=./docs-site --exclude=./.tmp --exclude="./${plain#"$(pwd)/"}" .
  tar -rf "$plain" ./.tmp/node
  gzip -f -c "$plain" >"$tar_file" && rm -f "$plain"
  echo "gpu-bench-pack: wrote $tar_file ($(du -h "$tar_file" | cut -f1))"
else
  echo "gpu-bench-pack: carry the repository with node_modules, packages/*/node_modules, packages/backends/*/node_modules, the dist folders and .tmp/node"
fi
