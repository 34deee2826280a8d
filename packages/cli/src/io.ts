/** Where a command writes: injected so tests run commands in-process. */
export interface CommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** stderr is a terminal: commands may redraw a progress bar there (default: plain lines). */
  readonly isTTY?: boolean;
}
