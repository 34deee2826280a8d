import { LINEAR_WORKGROUP } from './grid.js';

/**
 * Copies one row's new keys and values from the `[token][q | k | v]` projection output into one
 * layer of its cache (`[kvHead][index][headDim]`, `capacity` indices per head) at indices
 * `past … past + n − 1`: past the cache's visible length, so the cache changes only when the
 * forward commits. `keys`/`values` hold KV heads `[kvHead0, kvHead0 + numKv)` of the layer (one block
 * of it; `kvDim` is the whole projection's `numKvHeads·headDim`).
 */
export const KV_WRITE_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { n: u32, start: u32, past: u32, capacity: u32, numKv: u32, headDim: u32, qkvDim: u32, qDim: u32, kvHead0: u32, kvDim: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> keys: array<f32>;
@group(0) @binding(3) var<storage, read_write> values: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let id = linearWorkgroup(wid, nwg) * 64u + lid;
  let blockDim = p.numKv * p.headDim;
  if (id >= p.n * blockDim) { return; }
  let t = id / blockDim;
  let g = (id % blockDim) / p.headDim;
  let d = id % p.headDim;
  let src = (p.start + t) * p.qkvDim + p.qDim + (p.kvHead0 + g) * p.headDim + d;
  let dst = (g * p.capacity + p.past + t) * p.headDim + d;
  keys[dst] = qkv[src];
  values[dst] = qkv[src + p.kvDim];
}
`;
