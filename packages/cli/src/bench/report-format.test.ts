import { describe, expect, it } from 'vitest';
import { formatBytes, formatMs, formatNumber, formatPercent, formatRatio, formatSmall } from './report-format.js';

describe('report number formats', () => {
  it('prints null as an en dash', () => {
    for (const f of [formatMs, formatSmall, formatRatio, formatPercent, formatBytes, formatNumber]) expect(f(null)).toBe('–');
  });

  it('gives milliseconds 3 significant digits, whole from 100 up', () => {
    expect([0.012345, 1.4, 4.567, 78.94, 1615.4, 0].map(formatMs)).toEqual(['0.0123', '1.40', '4.57', '78.9', '1615', '0']);
  });

  it('puts tiny KL in exponent form', () => {
    expect([4.3e-14, 2.9e-9, 0.1153, 0].map(formatSmall)).toEqual(['4.3e-14', '2.9e-9', '0.115', '0']);
  });

  it('gives ratios 2 decimals, whole numbers from 100 up', () => {
    expect([1.3649, 0.96, 861.72].map(formatRatio)).toEqual(['1.36', '0.96', '862']);
  });

  it('prints fractions as percentages and bytes in KiB or MiB', () => {
    expect([1, 0, 0.5841, 0.99999].map(formatPercent)).toEqual(['100%', '0%', '58.4%', '100.0%']);
    expect([512, 98_304, 2_097_152, 4_351_000].map(formatBytes)).toEqual(['512 B', '96.0 KiB', '2.00 MiB', '4.15 MiB']);
  });
});
