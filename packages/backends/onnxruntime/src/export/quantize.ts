/**
 * Round-to-nearest block quantization of a weight matrix into the layout of onnxruntime's
 * `MatMulNBits` (com.microsoft): for `W` `[N][K]` (HF's `[out][in]`), every output row `n` is cut
 * along K into blocks of `blockSize` values, each stored as `bits`-bit unsigned integers with its
 * own float scale and zero point (`w ≈ (q − zp) · scale`).
 *
 * Layouts (onnxruntime's `docs/ContribOperators.md`, MatMulNBits):
 * - `B` uint8 `[N][K/blockSize][blockSize·bits/8]`: 4-bit values two to a byte, the first in the low nibble;
 * - `scales` float `[N·K/blockSize]`, row-major `[n][block]`;
 * - `zero_points` uint8 `[N][⌈(K/blockSize)·bits/8⌉]`: 4-bit ones two to a byte (low nibble first).
 */

/** Bits per quantized weight: `int4` or `int8` exports. */
export type QuantBits = 4 | 8;

/** One matrix quantized for `MatMulNBits`. */
export interface QuantizedMatrix {
  readonly bits: QuantBits;
  readonly blockSize: number;
  /** Output features (rows of W). */
  readonly n: number;
  /** Input features (columns of W), a multiple of `blockSize`. */
  readonly k: number;
  /** `[N][K/blockSize][blockSize·bits/8]` */
  readonly data: Uint8Array;
  /** `[N·K/blockSize]` */
  readonly scales: Float32Array;
  /** `[N][⌈(K/blockSize)·bits/8⌉]` */
  readonly zeroPoints: Uint8Array;
}

/**
 * Quantizes `w` (`[n][k]`, row-major) block by block: the block's range is widened to include 0
 * (so zeros stay exact, as onnxruntime's own quantizer does), `scale = (max − min) / (2^bits − 1)`,
 * `zp = round(−min / scale)`, `q = clamp(round(w / scale) + zp)`. Asymmetric blocks reconstruct
 * skewed weight blocks better than symmetric ones at the same size (the zero points add
 * bits/blockSize bits per weight). `k` must be a multiple of `blockSize` (callers fall back to float
 * otherwise).
 */
export function quantizeBlockwise(w: Float32Array, n: number, k: number, bits: QuantBits, blockSize: number): QuantizedMatrix {
  if (k % blockSize !== 0 || blockSize % 2 !== 0) throw new RangeError(`k = ${k} is not a multiple of the block size ${blockSize}`);
  if (w.length !== n * k) throw new RangeError(`a ${n}×${k} matrix needs ${n * k} values, got ${w.length}`);
  const blocks = k / blockSize;
  const levels = (1 << bits) - 1;
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  const data = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zeroPoints = new Uint8Array(n * zpRow);
  for (let row = 0; row < n; row++) {
    for (let blk = 0; blk < blocks; blk++) {
      const from = row * k + blk * blockSize;
      let lo = 0;
      let hi = 0;
      for (let i = 0; i < blockSize; i++) {
        const v = w[from + i]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = Math.fround(hi > lo ? (hi - lo) / levels : 1);
      const zp = Math.min(levels, Math.max(0, Math.round(-lo / scale)));
      const inv = 1 / scale;
      scales[row * blocks + blk] = scale;
      const out = (row * blocks + blk) * blob;
      if (bits === 8) {
        for (let i = 0; i < blockSize; i++) data[out + i] = clampRound(w[from + i]! * inv + zp, levels);
        zeroPoints[row * zpRow + blk] = zp;
      } else {
        for (let i = 0; i < blockSize; i += 2) {
          const a = clampRound(w[from + i]! * inv + zp, levels);
          const b = clampRound(w[from + i + 1]! * inv + zp, levels);
          data[out + i / 2] = a | (b << 4);
        }
        zeroPoints[row * zpRow + (blk >> 1)]! |= zp << ((blk & 1) * 4);
      }
    }
  }
  return { bits, blockSize, n, k, data, scales, zeroPoints };
}

/** The float matrix `[n][k]` a quantized one stands for (what `MatMulNBits` multiplies by). */
export function dequantize(q: QuantizedMatrix): Float32Array {
  const { n, k, bits, blockSize } = q;
  const blocks = k / blockSize;
  const blob = (blockSize * bits) / 8;
  const zpRow = Math.ceil((blocks * bits) / 8);
  const out = new Float32Array(n * k);
  for (let row = 0; row < n; row++) {
    for (let blk = 0; blk < blocks; blk++) {
      const scale = q.scales[row * blocks + blk]!;
      const zp = bits === 8 ? q.zeroPoints[row * zpRow + blk]! : (q.zeroPoints[row * zpRow + (blk >> 1)]! >> ((blk & 1) * 4)) & 15;
      const at = (row * blocks + blk) * blob;
      for (let i = 0; i < blockSize; i++) {
        const v = bits === 8 ? q.data[at + i]! : (q.data[at + (i >> 1)]! >> ((i & 1) * 4)) & 15;
        out[row * k + blk * blockSize + i] = (v - zp) * scale;
      }
    }
  }
  return out;
}

function clampRound(x: number, levels: number): number {
  const r = Math.round(x);
  return r < 0 ? 0 : r > levels ? levels : r;
}
