import { LINEAR_WORKGROUP } from './grid.js';

/**
 * `y[t][o] = Σ_k x[t][k]·w[o][k] (+ bias[o])`; x `[rows][inDim]`, w HF Linear `[outDim][inDim]`,
 * y `[rows][outDim]`; inDim must be a multiple of 4 (read as vec4). `w` may be a row block of a
 * larger matrix: its outputs land in columns `yCol …` of rows `yStride` floats wide (bias indexed by
 * that column); a whole matrix has `yCol = 0`, `yStride = outDim`.
 *
 * Register-blocked: each invocation keeps a 4-row × 4-output block in registers and streams both
 * operands from memory, no workgroup memory and no barriers. On a software rasteriser (llvmpipe)
 * barriers are the expensive part: there this ran 5× faster than the tiled kernel on 64 rows and
 * 50× on one. A block with one live row (decode) runs a one-row loop instead of four.
 */
export const MATMUL_REGISTER_BLOCKED_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { rows: u32, inDim4: u32, outDim: u32, hasBias: u32, yStride: u32, yCol: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn store(r: u32, o: u32, acc: vec4f) {
  if (r >= p.rows) { return; }
  for (var j = 0u; j < 4u; j++) {
    let oj = o + j;
    if (oj < p.outDim) {
      var b = 0.0;
      if (p.hasBias != 0u) { b = bias[p.yCol + oj]; }
      y[r * p.yStride + p.yCol + oj] = acc[j] + b;
    }
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let id = linearWorkgroup(wid, nwg) * 64u + lid;
  let outBlocks = (p.outDim + 3u) / 4u;
  let rowBlocks = (p.rows + 3u) / 4u;
  if (id >= outBlocks * rowBlocks) { return; }
  let o0 = (id % outBlocks) * 4u;
  let r0 = (id / outBlocks) * 4u;
  let k4 = p.inDim4;
  // Rows and outputs past the end read a valid row (clamped) and are never stored.
  let lastRow = p.rows - 1u;
  let lastOut = p.outDim - 1u;
  let w0 = min(o0, lastOut) * k4;
  let w1 = min(o0 + 1u, lastOut) * k4;
  let w2 = min(o0 + 2u, lastOut) * k4;
  let w3 = min(o0 + 3u, lastOut) * k4;
  let x0 = r0 * k4;
  if (r0 == lastRow) {
    var a = vec4f(0.0);
    for (var k = 0u; k < k4; k++) {
      // Columns of m are the four weight rows: x · m is their four dot products.
      a += x[x0 + k] * mat4x4f(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
    }
    store(r0, o0, a);
    return;
  }
  let x1 = min(r0 + 1u, lastRow) * k4;
  let x2 = min(r0 + 2u, lastRow) * k4;
  let x3 = min(r0 + 3u, lastRow) * k4;
  var a0 = vec4f(0.0);
  var a1 = vec4f(0.0);
  var a2 = vec4f(0.0);
  var a3 = vec4f(0.0);
  for (var k = 0u; k < k4; k++) {
    let m = mat4x4f(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
    a0 += x[x0 + k] * m;
    a1 += x[x1 + k] * m;
    a2 += x[x2 + k] * m;
    a3 += x[x3 + k] * m;
  }
  store(r0, o0, a0);
  store(r0 + 1u, o0, a1);
  store(r0 + 2u, o0, a2);
  store(r0 + 3u, o0, a3);
}
`;

/** Invocations per workgroup of {@link MATMUL_REGISTER_BLOCKED_WGSL}. */
export const REGISTER_BLOCKED_WORKGROUP = 64;
