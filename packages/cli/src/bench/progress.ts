/** Where the bench reports how far it is: a bar redrawn in place on a terminal, one line per unit otherwise. */
export interface BenchProgress {
  /** The run has `total` units of work. */
  start(total: number): void;
  /** One unit is starting; `label` says what. */
  step(label: string): void;
  /** All done: the bar is cleared. */
  finish(): void;
}

const BAR_WIDTH = 28;

/** A progress bar on a terminal (`\r`-redrawn, cleared at the end); plain `bench: [i/n] label` lines otherwise. */
export function createProgress(write: (text: string) => void, terminal: boolean): BenchProgress {
  let total = 1;
  let done = 0;
  let started = 0;
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)}s`;
  return {
    start(n) {
      total = Math.max(1, n);
      done = 0;
      started = performance.now();
    },
    step(label) {
      const i = Math.min(total, ++done);
      if (terminal) {
        const filled = Math.round((BAR_WIDTH * (i - 1)) / total);
        write(`\r\x1b[K[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${i}/${total} ${elapsed()} ${label}`);
      } else {
        write(`bench: [${i}/${total}] ${label}\n`);
      }
    },
    finish() {
      if (terminal) write('\r\x1b[K');
      else write(`bench: done in ${elapsed()}\n`);
    },
  };
}
