#!/usr/bin/env bash
# scripts/gpu-bench.sh: ropeswitch's benchmark with the WebGPU backend (Dawn, through the `webgpu`
# npm package) on a machine with a GPU, next to the reference backend, and where the report went.
#
# It runs from a copy of this repository built elsewhere, on a machine that may have no package
# registry and no Node: it installs nothing and downloads nothing. Prepare the copy where the
# toolchain is (same OS and CPU architecture: Dawn is a native addon):
#
#   npx --yes pnpm@12.4.2 install && npx --yes pnpm@12.4.2 -r run build
#   scripts/gpu-bench-pack.sh              # copies this Node binary to .tmp/node/bin/node
#   scripts/gpu-bench-pack.sh --tar FILE   # … and packs the repository with what it needs
#
# then carry the repository with its ignored folders `node_modules`, `packages/*/node_modules`,
# `packages/backends/*/node_modules`, the `dist` folders, and `.tmp/node`, and run there:
#
#   scripts/gpu-bench.sh [--quick] [--out DIR] [--require-gpu] [-- more bench options]
#
#   --quick        the CLI's quick benchmark (seconds, not minutes)
#   --out DIR      report folder (default bench-out/gpu-<UTC time>); report.json, report.md,
#                  report.html from `ropeswitch bench`, adapter.json, gpu-bench.log
#   --require-gpu  fail when the only WebGPU adapter is a software one
#   after --       passed to `ropeswitch bench` as they are (e.g. --policies re-prefill,shadow-prefill)
#
# Node: $ROPESWITCH_NODE if set, else `node` on PATH when it is version 20 or newer, else the
# carried .tmp/node/bin/node. The adapter is the one the backend's Node entry finds: a real GPU
# (Dawn's Vulkan on Linux), else Mesa's llvmpipe (software: said so, and refused by --require-gpu).
# Steps: the CLI bench with `--backends reference,webgpu`; then, when present,
# scripts/bench-webgpu.ts (the backend's own kernel benchmark) through tsx, into DIR/bench-webgpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

quick=()
out_dir=""
require_gpu=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick); shift ;;
    --out) [ $# -ge 2 ] || { echo "gpu-bench: --out needs a folder" >&2; exit 2; }; out_dir="$2"; shift 2 ;;
    --out=*) out_dir="${1#--out=}"; shift ;;
    --require-gpu) require_gpu=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-bench: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$out_dir" ] || out_dir="bench-out/gpu-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
log="$out_dir/gpu-bench.log"
say() { echo "gpu-bench: $*" | tee -a "$log" >&2; }
: >"$log"

# --- Node ≥ 20: nothing is installed here, so use one that is present or was carried -------------
node_ok() { [ -x "$1" ] && "$1" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; }
node_bin=""
for candidate in "${ROPESWITCH_NODE:-}" "$(command -v node 2>/dev/null || true)" "$repo/.tmp/node/bin/node"; do
  if [ -n "$candidate" ] && node_ok "$candidate"; then node_bin="$candidate"; break; fi
done
if [ -z "$node_bin" ]; then
  say "no Node 20 or newer: not on PATH, not in \$ROPESWITCH_NODE, not carried in .tmp/node/bin/node."
  say "On the machine that built the repository, run scripts/gpu-bench-pack.sh and carry .tmp/node along."
  exit 1
fi
# tsx and the CLI start child processes with `node`: make it this one.
export PATH="$(dirname "$node_bin"):$PATH"
say "node $("$node_bin" -p process.version) at $node_bin"

# --- The built repository ---------------------------------------------------------------------------
missing=()
for f in packages/cli/dist/bin.js packages/core/dist/index.js packages/backends/webgpu/dist/index.js packages/backends/webgpu/dist/node.js packages/backends/webgpu/node_modules/webgpu/package.json; do
  [ -e "$f" ] || missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "this copy is not built or lacks its node_modules: missing ${missing[*]}"
  say "build it where pnpm is (pnpm install && pnpm -r run build) and carry node_modules, packages/*/dist and the packages' node_modules."
  exit 1
fi

# --- Which WebGPU adapter the backend gets ---------------------------------------------------------
# The backend's own device finder (requestNodeGpuDevice: a real GPU through Vulkan first, else Mesa's
# llvmpipe through OpenGL ES), so the adapter printed is the one the bench runs on.
probe='
  const { requestNodeGpuDevice } = await import(process.argv[1]);
  try {
    const { device, adapterDescription, software } = await requestNodeGpuDevice();
    device.destroy();
    console.log(JSON.stringify({ found: true, adapterDescription, software }));
  } catch (error) {
    console.log(JSON.stringify({ found: false, error: String(error?.message ?? error) }));
  }
  process.exit(0);'
adapter_json="$("$node_bin" --input-type=module -e "$probe" "$repo/packages/backends/webgpu/dist/node.js" 2>>"$log" || echo '{"found":false,"error":"the probe crashed (see gpu-bench.log)"}')"
echo "$adapter_json" >"$out_dir/adapter.json"
if [[ "$adapter_json" != *'"found":true'* ]]; then
  say "no WebGPU adapter: $adapter_json"
  say "Vulkan loader: $( (ldconfig -p 2>/dev/null | grep -m1 'libvulkan.so.1') || echo 'libvulkan.so.1 not found')"
  say "Vulkan drivers (ICD files): $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ' || true)"
  say "an NVIDIA GPU needs libvulkan1 and the driver's nvidia_icd.json (in containers: NVIDIA_DRIVER_CAPABILITIES=graphics,compute,utility)"
  exit 1
fi
describe="$("$node_bin" -e 'const a = JSON.parse(process.argv[1]); console.log(`${a.adapterDescription} (${a.software ? "SOFTWARE adapter: its timings are not a GPU\u2019s" : "real GPU"})`)' "$adapter_json")"
say "WebGPU adapter: $describe"
if [[ "$adapter_json" == *'"software":true'* ]] && [ "$require_gpu" = 1 ]; then
  say "--require-gpu: stopping, the adapter is a software one"
  exit 1
fi

# --- The benchmark ------------------------------------------------------------------------------------
status=0
say "running: ropeswitch bench --backends reference,webgpu ${quick[*]:-} --out $out_dir ${extra[*]:-}"
"$node_bin" packages/cli/dist/bin.js bench --backends reference,webgpu ${quick[@]+"${quick[@]}"} --out "$out_dir" ${extra[@]+"${extra[@]}"} 2>&1 | tee -a "$log" || status=$?
if [ "$status" -ne 0 ]; then say "ropeswitch bench failed (exit $status)"; fi

if [ -f scripts/bench-webgpu.ts ] && [ -f node_modules/tsx/dist/cli.mjs ]; then
  say "running: scripts/bench-webgpu.ts ${quick[*]:-}"
  if "$node_bin" node_modules/tsx/dist/cli.mjs scripts/bench-webgpu.ts ${quick[@]+"${quick[@]}"} >"$out_dir/bench-webgpu.txt" 2>>"$log"; then
    cat "$out_dir/bench-webgpu.txt"
  else
    s=$?; say "scripts/bench-webgpu.ts failed (exit $s)"; [ "$status" -ne 0 ] || status=$s
  fi
fi

say "adapter: $describe"
[ -f "$out_dir/report.html" ] && say "report: $out_dir/report.html (report.md, report.json beside it)"
[ -f "$out_dir/bench-webgpu.txt" ] && say "WebGPU kernel benchmark: $out_dir/bench-webgpu.txt"
say "log: $log"
exit "$status"
