import { LINEAR_WORKGROUP } from './grid.js';

/** Largest head dim the attention kernels handle (four output dims per invocation of the workgroup kernel). */
export const MAX_ATTENTION_HEAD_DIM = 256;

/**
 * Causal GQA attention of one row's `n` new queries over its cache: query t sees cache indices
 * `[0, past + t]` (the new keys were written at `past …` before). One workgroup of 64 per
 * (query, head); keys go in blocks of 64, one score per invocation, with an online softmax
 * (running max and sum, rescaled per block), so any cache length fits in 256 floats of workgroup
 * memory. Invocation i owns output dims i, i + 64, …. Four barriers per 64 keys: the choice on real
 * GPUs (the `tiled` kernel set).
 *
 * q: rows of the `[token][q | k | v]` projection (stride `qStride`), heads `[head][headDim]`, from
 * token `start`; keys/values: one block of a cache layer, `[kvHead][index][headDim]` for the KV heads
 * of query heads `[headBase, headBase + heads)` (the whole layer when it fits one binding);
 * out: `[token][head·headDim]`.
 */
export const ATTENTION_WORKGROUP_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params { n: u32, start: u32, past: u32, capacity: u32, heads: u32, group: u32, headDim: u32, qStride: u32, outStride: u32, scale: f32, headBase: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> keys: array<f32>;
@group(0) @binding(3) var<storage, read> values: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
var<workgroup> qs: array<f32, ${MAX_ATTENTION_HEAD_DIM}>;
var<workgroup> scores: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let id = linearWorkgroup(wid, nwg);
  if (id >= p.n * p.heads) { return; }
  let t = id / p.heads;
  let h = p.headBase + id % p.heads;
  let kvBase = ((id % p.heads) / p.group) * p.capacity * p.headDim;
  let qOff = (p.start + t) * p.qStride + h * p.headDim;
  for (var d = lid; d < p.headDim; d += 64u) { qs[d] = q[qOff + d]; }
  workgroupBarrier();
  let span = p.past + t + 1u;
  var m = -3.0e38;
  var l = 0.0;
  var acc = vec4f(0.0);
  for (var j0 = 0u; j0 < span; j0 += 64u) {
    let j = j0 + lid;
    var s = -3.0e38;
    if (j < span) {
      let k = kvBase + j * p.headDim;
      var dotp = 0.0;
      for (var d = 0u; d < p.headDim; d++) { dotp += qs[d] * keys[k + d]; }
      s = dotp * p.scale;
    }
    scores[lid] = s;
    workgroupBarrier();
    let count = min(64u, span - j0);
    var bm = m;
    for (var i = 0u; i < count; i++) { bm = max(bm, scores[i]); }
    workgroupBarrier();
    // One exp per key: each invocation turns its own score into a weight.
    scores[lid] = exp(s - bm);
    workgroupBarrier();
    let correction = exp(m - bm);
    l *= correction;
    acc *= correction;
    for (var i = 0u; i < count; i++) {
      let e = scores[i];
      l += e;
      let v = kvBase + (j0 + i) * p.headDim;
      for (var c = 0u; c < 4u; c++) {
        let d = lid + 64u * c;
        if (d < p.headDim) { acc[c] += e * values[v + d]; }
      }
    }
    m = bm;
    workgroupBarrier();
  }
  let o = (p.start + t) * p.outStride + h * p.headDim;
  for (var c = 0u; c < 4u; c++) {
    let d = lid + 64u * c;
    if (d < p.headDim) { out[o + d] = acc[c] / l; }
  }
}
`;

/**
 * The same attention with one invocation per (query, head) and no workgroup memory or barriers:
 * each invocation runs the online softmax over its keys alone, one key at a time (rescaling by
 * `exp(m − m')` every key, so there is no branch), with the query and the output accumulator in
 * private arrays. The head dim is baked into the shader (one pipeline per head dim): with constant
 * loop bounds the shader compiler unrolls the loops and keeps those arrays in registers, which on
 * llvmpipe is 10× faster than indexing them at run time. On a software adapter (llvmpipe runs a
 * workgroup's invocations as SIMD lanes, and a barrier is a costly context switch) this is the fast
 * kernel (the `register-blocked` set); on a GPU it leaves most lanes idle during decode. Reads
 * vec4s: head dim, q stride and output stride must be multiples of 4.
 */
export function attentionPerQueryWgsl(headDim: number): string {
  if (headDim % 4 !== 0 || headDim > MAX_ATTENTION_HEAD_DIM) throw new RangeError(`head dim ${headDim} is not a multiple of 4 up to ${MAX_ATTENTION_HEAD_DIM}`);
  return /* wgsl */ `
${LINEAR_WORKGROUP}
const D4 = ${headDim / 4}u;
struct Params { n: u32, start: u32, past: u32, capacity: u32, heads: u32, group: u32, headDim: u32, qStride: u32, outStride: u32, scale: f32, headBase: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4f>;
@group(0) @binding(2) var<storage, read> keys: array<vec4f>;
@group(0) @binding(3) var<storage, read> values: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let id = linearWorkgroup(wid, nwg) * 64u + lid;
  if (id >= p.n * p.heads) { return; }
  let t = id / p.heads;
  let h = p.headBase + id % p.heads;
  // Offsets in vec4 units.
  let kvBase = ((id % p.heads) / p.group) * p.capacity * D4;
  let qOff = ((p.start + t) * p.qStride + h * p.headDim) / 4u;
  var qv: array<vec4f, D4>;
  var acc: array<vec4f, D4>;
  for (var d = 0u; d < D4; d++) {
    qv[d] = q[qOff + d];
    acc[d] = vec4f(0.0);
  }
  let span = p.past + t + 1u;
  var m = -3.0e38;
  var l = 0.0;
  for (var j = 0u; j < span; j++) {
    let k = kvBase + j * D4;
    var dotp = vec4f(0.0);
    for (var d = 0u; d < D4; d++) { dotp += qv[d] * keys[k + d]; }
    let s = (dotp.x + dotp.y + dotp.z + dotp.w) * p.scale;
    let next = max(m, s);
    let correction = exp(m - next);
    let e = exp(s - next);
    l = l * correction + e;
    for (var d = 0u; d < D4; d++) { acc[d] = acc[d] * correction + e * values[k + d]; }
    m = next;
  }
  let o = ((p.start + t) * p.outStride + h * p.headDim) / 4u;
  for (var d = 0u; d < D4; d++) { out[o + d] = acc[d] / l; }
}
`;
}
