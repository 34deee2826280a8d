import { LINEAR_WORKGROUP } from './grid.js';

/** Invocations per workgroup of the elementwise kernels. */
export const ELEMENTWISE_WORKGROUP = 64;

/**
 * Gathers embedding rows: `x[t][d] = embed[ids[t]][d]`; embed is `[vocab][hidden]`, x `[token][hidden]`.
 * `embed` holds rows `[first, first + rows)` of the table (one row block, see `DeviceMatrix`): only
 * tokens whose id falls there are written, so one dispatch per block fills every token once.
 */
export const EMBED_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { count: u32, hidden: u32, first: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> embed: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linearWorkgroup(wid, nwg) * 64u + lid;
  if (i >= p.count) { return; }
  let id = ids[i / p.hidden];
  if (id < p.first || id - p.first >= p.rows) { return; }
  x[i] = embed[(id - p.first) * p.hidden + i % p.hidden];
}
`;

/** Residual add in place: `x[i] += y[i]` for i < count. */
export const ADD_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { count: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linearWorkgroup(wid, nwg) * 64u + lid;
  if (i >= p.count) { return; }
  x[i] = x[i] + y[i];
}
`;

/** SwiGLU: from the fused `[token][gate | up]` projection to `[token][size]`: `up ⊙ silu(gate)`. */
export const SWIGLU_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { count: u32, size: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gateUp: array<f32>;
@group(0) @binding(2) var<storage, read_write> act: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linearWorkgroup(wid, nwg) * 64u + lid;
  if (i >= p.count) { return; }
  let t = i / p.size;
  let j = i % p.size;
  let g = gateUp[t * 2u * p.size + j];
  let u = gateUp[t * 2u * p.size + p.size + j];
  act[i] = u * (g / (1.0 + exp(-g)));
}
`;
