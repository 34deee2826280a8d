import { LINEAR_WORKGROUP } from './grid.js';

/**
 * Turns rotary pairs in place, `pairs` consecutive pairs of one vector per invocation: all of a
 * vector's on software adapters (fewer, longer invocations), one on GPUs (neighbouring invocations
 * then touch neighbouring floats, so memory accesses coalesce). Pairs are `(i, i + half)`
 * (rotate-half) or `(2i, 2i + 1)` (interleaved); dims past the rotary ones are left alone.
 * `a' = a·c − b·s`, `b' = b·c + a·s` with c, s from the table row of the vector.
 *
 * Two uses, one arithmetic:
 * - the forward's queries and new keys: vectors are the heads of `[token][qkv]` rows (q heads, then
 *   k heads, contiguous), table row = token (`cos`/`sin` `[token][half]`, computed on the CPU);
 * - the cache rerotation: vectors are cached keys `[kvHead][index][headDim]` of one span, table row
 *   = `rows[index − start]` (a memoised per-position table).
 */
export const ROTARY_WGSL = /* wgsl */ `
${LINEAR_WORKGROUP}
struct Params {
  vectors: u32,     // vectors to turn
  perGroup: u32,    // vectors sharing one table row (heads of a token) — or 1
  groupStride: u32, // elements between consecutive groups
  vectorStride: u32,// elements between vectors of a group
  base: u32,        // element offset of vector 0
  half: u32,
  interleaved: u32,
  indirect: u32,    // 1: table row = rows[group]; 0: table row = group
  pairs: u32,       // pairs per invocation (a divisor-free chunk; the last one may be shorter)
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> data: array<f32>;
@group(0) @binding(2) var<storage, read> cosTable: array<f32>;
@group(0) @binding(3) var<storage, read> sinTable: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let id = linearWorkgroup(wid, nwg) * 64u + lid;
  let chunks = (p.half + p.pairs - 1u) / p.pairs;
  if (id >= p.vectors * chunks) { return; }
  let v = id / chunks;
  let first = (id % chunks) * p.pairs;
  let last = min(first + p.pairs, p.half);
  let group = v / p.perGroup;
  let at = p.base + group * p.groupStride + (v % p.perGroup) * p.vectorStride;
  var row = group;
  if (p.indirect != 0u) { row = rows[group]; }
  let t = row * p.half;
  // rotate-half pairs (i, i + half); interleaved (2i, 2i + 1).
  var step = 1u;
  var gap = p.half;
  if (p.interleaved != 0u) {
    step = 2u;
    gap = 1u;
  }
  for (var i = first; i < last; i++) {
    let c = cosTable[t + i];
    let s = sinTable[t + i];
    let ia = at + i * step;
    let a = data[ia];
    let b = data[ia + gap];
    data[ia] = a * c - b * s;
    data[ia + gap] = b * c + a * s;
  }
}
`;
