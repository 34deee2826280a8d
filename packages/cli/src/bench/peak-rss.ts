/**
 * The largest resident set of this process over a stretch of work: sampled on a 25 ms timer (it
 * fires while a backend computes off the main thread) and whenever the caller asks (between steps,
 * outside any timed part). A synchronous forward hides its own transient from the timer, but what it
 * allocated stays resident until garbage collection, so the next sample still sees it.
 */
export class PeakRss {
  #peak = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** Starts a new stretch. */
  start(intervalMs = 25): void {
    this.stop();
    this.#peak = process.memoryUsage.rss();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  /** Takes one sample now (about 4 µs). */
  sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss > this.#peak) this.#peak = rss;
  }

  /** Ends the stretch and returns its peak in bytes. */
  stop(): number {
    if (this.#timer !== undefined) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.sample();
    }
    return this.#peak;
  }
}
