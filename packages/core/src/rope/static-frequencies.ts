import type { RopeScaling } from '../config/model-config.js';
import { baseFrequencies } from './base-frequencies.js';

/** Frequencies and attention factor of a length-independent schedule. */
export interface StaticFrequencies {
  readonly f32: Float32Array;
  readonly f64: Float64Array;
  readonly attentionFactor: number;
}

type StaticScaling = Extract<RopeScaling, { type: 'default' | 'linear' | 'yarn' | 'llama3' }>;

/**
 * HF transformers' `_compute_{default,linear_scaling,yarn,llama3}_rope_parameters`, with each
 * float32 step rounded as torch rounds it so the float32 view matches HF's tensors.
 */
export function staticFrequencies(theta: number, rotaryDim: number, scaling: StaticScaling): StaticFrequencies {
  const base = baseFrequencies(theta, rotaryDim);
  switch (scaling.type) {
    case 'default':
      return { ...base, attentionFactor: 1 };
    case 'linear': {
      const factor32 = Math.fround(scaling.factor);
      return {
        f32: base.f32.map((w) => Math.fround(w / factor32)),
        f64: base.f64.map((w) => w / scaling.factor),
        attentionFactor: 1,
      };
    }
    case 'yarn':
      return yarnFrequencies(theta, rotaryDim, scaling);
    case 'llama3':
      return llama3Frequencies(base, scaling);
  }
}

/**
 * HF's yarn `find_correction_dim`: the (fractional) pair index at which a frequency makes `rotations`
 * turns over `originalMax` positions, `r · ln(L / (rotations · 2π)) / (2 ln b)`. Infinite or NaN when
 * `L / (rotations · 2π)` overflows (tiny `beta_*`) or underflows to 0 (huge `beta_*`): HF raises there
 * (`math.floor(inf)`, `math.log(0)`), and the parser rejects such configs.
 */
export function yarnCorrectionDim(rotations: number, rotaryDim: number, theta: number, originalMax: number): number {
  return (rotaryDim * Math.log(originalMax / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
}

function yarnFrequencies(
  theta: number,
  rotaryDim: number,
  s: Extract<RopeScaling, { type: 'yarn' }>,
): StaticFrequencies {
  const half = rotaryDim / 2;
  const correctionDim = (rotations: number) => yarnCorrectionDim(rotations, rotaryDim, theta, s.originalMaxPositionEmbeddings);
  const low = Math.max(Math.floor(correctionDim(s.betaFast)), 0);
  let high = Math.min(Math.ceil(correctionDim(s.betaSlow)), rotaryDim - 1);
  if (low === high) high += 0.001; // HF avoids a zero-width ramp the same way
  const f32 = new Float32Array(half);
  const f64 = new Float64Array(half);
  const factor32 = Math.fround(s.factor);
  const base32 = Math.fround(theta);
  for (let i = 0; i < half; i++) {
    const pos32 = Math.fround(Math.pow(base32, Math.fround((2 * i) / rotaryDim)));
    const pos64 = Math.pow(theta, (2 * i) / rotaryDim);
    const ramp32 = Math.min(Math.max(Math.fround(Math.fround(i - low) / Math.fround(high - low)), 0), 1);
    const ramp64 = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const extrapolation32 = Math.fround(1 - ramp32);
    const extrapolation64 = 1 - ramp64;
    const interp32 = Math.fround(1 / Math.fround(factor32 * pos32));
    const extrap32 = Math.fround(1 / pos32);
    f32[i] = Math.fround(
      Math.fround(interp32 * Math.fround(1 - extrapolation32)) + Math.fround(extrap32 * extrapolation32),
    );
    f64[i] = (1 / (s.factor * pos64)) * (1 - extrapolation64) + (1 / pos64) * extrapolation64;
  }
  return { f32, f64, attentionFactor: s.attentionFactor ?? 0.1 * Math.log(s.factor) + 1 };
}

function llama3Frequencies(
  base: { f32: Float32Array; f64: Float64Array },
  s: Extract<RopeScaling, { type: 'llama3' }>,
): StaticFrequencies {
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const scale = (w: number, round: (x: number) => number): number => {
    const wavelen = round((2 * Math.PI) / w);
    if (wavelen < highWavelen) return w; // high frequencies: unchanged
    if (wavelen > lowWavelen) return round(w / s.factor); // low frequencies: interpolated
    const smooth = round(
      round(round(s.originalMaxPositionEmbeddings / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor),
    );
    return round(round(round(1 - smooth) * round(w / s.factor)) + round(smooth * w));
  };
  const f32 = new Float32Array(base.f32.length);
  const f64 = new Float64Array(base.f64.length);
  for (let i = 0; i < f32.length; i++) {
    f32[i] = scale(base.f32[i]!, Math.fround);
    f64[i] = scale(base.f64[i]!, (x) => x);
  }
  return { f32, f64, attentionFactor: 1 };
}
