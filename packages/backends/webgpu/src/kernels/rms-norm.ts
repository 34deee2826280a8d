import { LINEAR_WORKGROUP } from './grid.js';

/**
 * HF RMSNorm, one workgroup per row: `out = w ⊙ (x / sqrt(mean(x²) + eps))`, x and out `[row][dim]`.
 * The sum of squares is a tree reduction over 64 partial sums.
 */
export const RMS_NORM_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { rows: u32, dim: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = linearWorkgroup(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.dim;
  var s = 0.0;
  for (var i = lid; i < p.dim; i += 64u) {
    let v = x[base + i];
    s += v * v;
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var half = 32u; half > 0u; half >>= 1u) {
    if (lid < half) { partial[lid] += partial[lid + half]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
  for (var i = lid; i < p.dim; i += 64u) {
    out[base + i] = weight[i] * (x[base + i] * inv);
  }
}
`;
