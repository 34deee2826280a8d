/** Bumped whenever the exported graph changes, so models cached on disk by an older exporter are not reused. */
export const EXPORTER_VERSION = 4;

/** Row slots of an export unless asked otherwise: a decode row, a shadow chunk and two more sequences share one run. */
export const DEFAULT_ROW_SLOTS = 4;

/**
 * Names of the exported decoder's inputs and outputs. One graph serves prefill chunks, decode
 * steps and any mix of them: a run carries up to `slots` rows (each one sequence's new tokens over
 * its own cache), packed on one token axis of T tokens. The projections and the MLP see all T
 * tokens at once (one pass over the weights); attention runs per slot, over that slot's cache and
 * its own new tokens (causal among them).
 *
 * Inputs:
 * - `input_ids` int64 `[T]`: the tokens of slot 0, then slot 1, …
 * - `rope_cos`, `rope_sin` float `[T][r/2]`: cos/sin of each token's angles, attention factor
 *   applied. The caller computes them for the regime it chose: the graph holds no frequencies.
 * - `row_offsets` int64 `[slots + 1]`: slot s holds tokens `[row_offsets[s], row_offsets[s+1])`
 *   (0 first, T last; an unused slot is empty).
 * - `past_lengths` int64 `[slots]`: how many leading rows of slot s's cache are valid (the rest are masked out).
 * - `logits_index` int64 `[N]`: the tokens (indices into T) whose logits are returned (N ≥ 0).
 * - `past_key.{l}.{s}`, `past_value.{l}.{s}` float `[kvHead][capacity_s][headDim]`: slot s's
 *   cache storage itself (capacity ≥ 1). Inputs only: the graph never copies or returns a cache.
 *
 * Outputs:
 * - `logits` float `[N][vocab]`
 * - `new_key.{l}`, `new_value.{l}` float `[kvHead][T][headDim]`: the new tokens' keys (after
 *   rotary) and values, which the caller writes into each slot's cache at rows `past_lengths[s] …`.
 */
export const DecoderIo = {
  inputIds: 'input_ids',
  ropeCos: 'rope_cos',
  ropeSin: 'rope_sin',
  rowOffsets: 'row_offsets',
  pastLengths: 'past_lengths',
  logitsIndex: 'logits_index',
  pastKey: (l: number, slot: number) => `past_key.${l}.${slot}`,
  pastValue: (l: number, slot: number) => `past_value.${l}.${slot}`,
  logits: 'logits',
  newKey: (l: number) => `new_key.${l}`,
  newValue: (l: number) => `new_value.${l}`,
} as const;
