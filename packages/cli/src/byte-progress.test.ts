import { describe, expect, it } from 'vitest';
import { createByteProgress } from './byte-progress.js';

describe('createByteProgress', () => {
  it('on a terminal: redraws one line in place, at most every 100 ms but always at the end, and clears it', () => {
    let out = '';
    const bar = createByteProgress((t) => (out += t), true, 'make-model x');
    bar.update(1e9, 4e9);
    bar.update(2e9, 4e9); // within 100 ms of the last draw: skipped
    bar.update(4e9, 4e9); // the end: drawn
    bar.finish();
    const frames = out.split('\r\x1b[K').filter((f) => f !== '');
    expect(frames).toHaveLength(2);
    expect(frames[0]).toMatch(/^make-model x \[#{7}-{21}\] 1\.00\/4\.00 GB \d+ MB\/s$/);
    expect(frames[1]).toMatch(/^make-model x \[#{28}\] 4\.00\/4\.00 GB/);
    expect(out.endsWith('\r\x1b[K')).toBe(true);
    expect(out).not.toContain('\n');
  });

  it('elsewhere: prints nothing (the command prints its own summary)', () => {
    let out = '';
    const bar = createByteProgress((t) => (out += t), false, 'x');
    bar.update(1, 2);
    bar.finish();
    expect(out).toBe('');
  });
});
