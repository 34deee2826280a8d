/**
 * Shared WGSL prelude: every kernel gets its linear workgroup index from a 2-D grid, since one
 * grid dimension holds at most 65535 workgroups (a 4096-token prefill needs more).
 */
export const LINEAR_WORKGROUP = /* wgsl */ `
fn linearWorkgroup(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}
`;

/** Most workgroups one grid dimension takes (the WebGPU default limit). */
export const MAX_GRID_X = 65535;

/** The grid that covers `groups` workgroups (kernels guard the excess of the last row). */
export function gridFor(groups: number): [number, number] {
  if (groups <= MAX_GRID_X) return [Math.max(1, groups), 1];
  return [MAX_GRID_X, Math.ceil(groups / MAX_GRID_X)];
}
