/** Layers [firstLayer, endLayer) placed in one WebAssembly memory; the LM head goes with the last group. */
export interface ArenaGroup {
  readonly firstLayer: number;
  readonly endLayer: number;
  /** Weight bytes placed in it. */
  readonly weightBytes: number;
}

/** Default weight bytes per memory: half of wasm32's 4 GiB, the other half for KV caches and activations. */
export const DEFAULT_ARENA_WEIGHT_BYTES = 2 * 1024 ** 3;

/**
 * Groups consecutive layers into memories of at most `budget` weight bytes each (a layer larger
 * than the budget gets a memory of its own), then the LM head (`headBytes`) with the last group if
 * it fits, else in a group of no layers. Only the hidden state crosses from one memory to the next,
 * so a model of any size loads, each memory's caches and activations staying below 4 GiB.
 */
export function planArenas(layerBytes: readonly number[], headBytes: number, budget: number = DEFAULT_ARENA_WEIGHT_BYTES): ArenaGroup[] {
  const groups: ArenaGroup[] = [];
  let first = 0;
  let bytes = 0;
  layerBytes.forEach((b, l) => {
    if (l > first && bytes + b > budget) {
      groups.push({ firstLayer: first, endLayer: l, weightBytes: bytes });
      first = l;
      bytes = 0;
    }
    bytes += b;
  });
  const end = layerBytes.length;
  if (end > first && bytes + headBytes > budget) {
    groups.push({ firstLayer: first, endLayer: end, weightBytes: bytes });
    groups.push({ firstLayer: end, endLayer: end, weightBytes: headBytes });
  } else {
    groups.push({ firstLayer: first, endLayer: end, weightBytes: bytes + headBytes });
  }
  return groups;
}
