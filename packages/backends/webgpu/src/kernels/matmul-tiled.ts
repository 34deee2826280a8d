import { LINEAR_WORKGROUP } from './grid.js';

/** Rows × outputs one workgroup of {@link MATMUL_TILED_WGSL} computes. */
export const TILE = 32;

/**
 * The same product, layouts and row-block parameters (`yStride`, `yCol`) as the register-blocked kernel, any inDim: a workgroup of 8×8
 * invocations computes a 32-row × 32-output tile, staging 32-wide k slices of both operands in
 * workgroup memory so each value read from memory serves 32 products; each invocation keeps a 4×4
 * block. The usual choice on real GPUs, where barriers are cheap and memory bandwidth is not.
 */
export const MATMUL_TILED_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { rows: u32, inDim: u32, outDim: u32, hasBias: u32, outTiles: u32, yStride: u32, yCol: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
// [row][k] and [output][k] slices of the tile, 32 × 32 each.
var<workgroup> xs: array<f32, 1024>;
var<workgroup> ws: array<f32, 1024>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = linearWorkgroup(wid, nwg);
  let rowTiles = (p.rows + 31u) / 32u;
  if (tile >= rowTiles * p.outTiles) { return; }
  let rowBase = (tile / p.outTiles) * 32u;
  let outBase = (tile % p.outTiles) * 32u;
  let tr = (lid / 8u) * 4u;
  let to = (lid % 8u) * 4u;
  var acc: array<vec4f, 4>;
  for (var k0 = 0u; k0 < p.inDim; k0 += 32u) {
    for (var e = 0u; e < 16u; e++) {
      let idx = e * 64u + lid;
      let r = idx / 32u;
      let k = k0 + idx % 32u;
      var xv = 0.0;
      if (rowBase + r < p.rows && k < p.inDim) { xv = x[(rowBase + r) * p.inDim + k]; }
      xs[idx] = xv;
      var wv = 0.0;
      if (outBase + r < p.outDim && k < p.inDim) { wv = w[(outBase + r) * p.inDim + k]; }
      ws[idx] = wv;
    }
    workgroupBarrier();
    for (var k = 0u; k < 32u; k++) {
      let b = vec4f(ws[to * 32u + k], ws[(to + 1u) * 32u + k], ws[(to + 2u) * 32u + k], ws[(to + 3u) * 32u + k]);
      acc[0] += xs[tr * 32u + k] * b;
      acc[1] += xs[(tr + 1u) * 32u + k] * b;
      acc[2] += xs[(tr + 2u) * 32u + k] * b;
      acc[3] += xs[(tr + 3u) * 32u + k] * b;
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = rowBase + tr + i;
    if (r >= p.rows) { break; }
    for (var j = 0u; j < 4u; j++) {
      let o = outBase + to + j;
      if (o < p.outDim) {
        var b = 0.0;
        if (p.hasBias != 0u) { b = bias[p.yCol + o]; }
        y[r * p.yStride + p.yCol + o] = acc[i][j] + b;
      }
    }
  }
}
`;
