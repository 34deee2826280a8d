/** A progress bar over bytes for long reads and writes (a checkpoint written or loaded). */
export interface ByteProgress {
  update(done: number, total: number): void;
  /** Clears the bar. */
  finish(): void;
}

const BAR_WIDTH = 28;
/** Redraws at most this often: a multi-gigabyte write reports thousands of pieces. */
const REDRAW_MS = 100;

/**
 * A bar redrawn in place on a terminal (`label [####----] 1.23/7.64 GB 250 MB/s`), cleared when
 * done; nothing when stderr is not a terminal (the command's own summary line says what was done).
 */
export function createByteProgress(write: (text: string) => void, terminal: boolean, label: string): ByteProgress {
  if (!terminal) return { update() {}, finish() {} };
  const started = performance.now();
  let last = -Infinity;
  let drawn = false;
  return {
    update(done, total) {
      const now = performance.now();
      if (now - last < REDRAW_MS && done < total) return;
      last = now;
      drawn = true;
      const filled = total > 0 ? Math.round((BAR_WIDTH * done) / total) : BAR_WIDTH;
      const rate = done / 1e6 / Math.max(1e-3, (now - started) / 1000);
      write(`\r\x1b[K${label} [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${(done / 1e9).toFixed(2)}/${(total / 1e9).toFixed(2)} GB ${rate.toFixed(0)} MB/s`);
    },
    finish() {
      if (drawn) write('\r\x1b[K');
    },
  };
}
