/** Order statistics of timings (bench figures are medians and tails, not means). */

/** The median (the mean of the two middle values for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = values.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The nearest-rank percentile `q` ∈ (0, 1] (p99 of 20 values is the largest); NaN when empty. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** The index of the median value (the lower middle for an even count): which repeat to show. */
export function medianIndex(values: readonly number[]): number {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  return order[(order.length - 1) >> 1]![1];
}

export function minMax(values: readonly number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) };
}

/**
 * The slowest step that is slow in most repeats: the largest over step indices of each step's
 * median over `repeats` (step i of every repeat is the same work). A pause landing on one step of
 * one repeat does not count; work the run does at that step every time does. NaN when empty.
 */
export function repeatableMax(repeats: readonly (readonly number[])[]): number {
  if (repeats.length === 0) return NaN;
  const steps = Math.min(...repeats.map((r) => r.length));
  if (steps === 0) return NaN;
  let max = -Infinity;
  for (let i = 0; i < steps; i++) max = Math.max(max, median(repeats.map((r) => r[i]!)));
  return max;
}

/**
 * Each step at its fastest over `repeats` (step i of every repeat is the same work), over the
 * steps they share: the step's floor. Timing noise only adds time (a pause of the machine,
 * another process, a garbage collection landing on a step), so the fastest repeat is the step's
 * own cost; a policy's work at a step is in every repeat, so in its floor too.
 */
export function stepFloors(repeats: readonly (readonly number[])[]): number[] {
  if (repeats.length === 0) return [];
  const steps = Math.min(...repeats.map((r) => r.length));
  return Array.from({ length: steps }, (_, i) => Math.min(...repeats.map((r) => r[i]!)));
}

/**
 * The slowest step at its own cost: the largest of the {@link stepFloors}. A pause counts only if
 * it lands on the same step in every repeat. With one repeat it is that repeat's maximum. NaN
 * when empty.
 */
export function floorMax(repeats: readonly (readonly number[])[]): number {
  const floors = stepFloors(repeats);
  return floors.length === 0 ? NaN : Math.max(...floors);
}

/** The slowest step of a policy against the same step of another, see {@link pairedMax}. */
export interface PairedMax {
  /** The largest over step indices of (this run's time at the step) / (the reference's there). */
  readonly ratio: number;
  /** The step index (into the given arrays) where it is. */
  readonly step: number;
}

/**
 * A policy's slowest step against the reference policy's same step: the largest over step indices
 * of `repeats`' fastest time at that step over `reference`'s fastest time at it (both teacher-forced
 * on one stream, so step i is the same decode row in each). Timing noise only ever adds time, so
 * the fastest of the repeats is the step's own cost; dividing by the reference's same step cancels
 * what every policy pays there (the first step after a prompt runs on cold CPU caches; later steps
 * attend to longer caches). What is left is the policy's own work: its spike, not the machine's.
 * `undefined` when either side has no steps.
 */
export function pairedMax(repeats: readonly (readonly number[])[], reference: readonly (readonly number[])[]): PairedMax | undefined {
  const floors = stepFloors(repeats);
  const referenceFloors = stepFloors(reference);
  const steps = Math.min(floors.length, referenceFloors.length);
  let best: PairedMax | undefined;
  for (let i = 0; i < steps; i++) {
    const ratio = floors[i]! / referenceFloors[i]!;
    if (!best || ratio > best.ratio) best = { ratio, step: i };
  }
  return best;
}
