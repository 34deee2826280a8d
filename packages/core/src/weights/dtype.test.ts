import { describe, expect, it } from 'vitest';
import { bf16BitsToF32, decodeTensor, encodeTensor, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from './dtype.js';

const f32 = (x: number) => Math.fround(x);

describe('f16', () => {
  it('decodes normals, subnormals, zeros, inf and NaN', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
  });

  it('rounds to nearest, ties to even, including subnormals and overflow', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16Bits(f32(1 + 2 ** -11 + 2 ** -20))).toBe(0x3c01); // above the tie → up
    expect(f32ToF16Bits(f32(1 / 3))).toBe(0x3555);
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie between 65504 (odd) and 65536 → inf
    expect(f32ToF16Bits(-1e10)).toBe(0xfc00);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie → even zero
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // tie between 1 and 2 units → 2
    expect(f32ToF16Bits(2 ** -30)).toBe(0x0000);
    expect(f32ToF16Bits(f32(2 ** -14 - 2 ** -26))).toBe(0x0400); // largest subnormal rounds up into normal
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(NaN)).toBe(0x7e00);
  });

  it('every non-NaN f16 bit pattern survives decode → encode, via both paths', () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const decoded = decodeTensor(new Uint8Array(bits.buffer), 'F16');
    const bad: number[] = []; // collected, not asserted per element: 65536 expects are slow
    for (let h = 0; h < 65536; h++) {
      const x = decoded[h]!;
      if (Number.isNaN(x) ? !Number.isNaN(f16BitsToF32(h)) : x !== f16BitsToF32(h) || f32ToF16Bits(x) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
  });
});

describe('bf16', () => {
  it('rounds to nearest, ties to even', () => {
    expect(f32ToBf16Bits(1.00390625)).toBe(0x3f80); // 1 + 2^-8: tie → even (down)
    expect(f32ToBf16Bits(1.01171875)).toBe(0x3f82); // 1 + 3·2^-8: tie → even (up)
    expect(f32ToBf16Bits(f32(1.00390625 + 2 ** -20))).toBe(0x3f81);
    expect(f32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // f32 max rounds to inf
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(bf16BitsToF32(f32ToBf16Bits(NaN))).toBeNaN();
  });

  it('every non-NaN bf16 bit pattern survives decode → encode', () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const decoded = decodeTensor(new Uint8Array(bits.buffer), 'BF16');
    const bad: number[] = [];
    for (let b = 0; b < 65536; b++) {
      const x = decoded[b]!;
      if (Number.isNaN(x) ? !Number.isNaN(bf16BitsToF32(b)) : !Object.is(x, bf16BitsToF32(b)) || f32ToBf16Bits(x) !== b) bad.push(b);
    }
    expect(bad).toEqual([]);
  });
});

describe('decodeTensor / encodeTensor', () => {
  it('round-trips F32 exactly, also from an unaligned buffer', () => {
    const data = new Float32Array([1.5, -0, 3.4e38, 1e-45, Infinity]);
    const bytes = encodeTensor(data, 'F32');
    expect(decodeTensor(bytes, 'F32')).toEqual(data);
    const unaligned = new Uint8Array(bytes.byteLength + 1).subarray(1);
    unaligned.set(bytes);
    expect(decodeTensor(unaligned, 'F32')).toEqual(data);
    expect(decodeTensor(unaligned.subarray(0, 4), 'F16')).toEqual(new Float32Array([0, 1.9375])); // halves of 1.5f: f16 0x0000, 0x3fc0
  });

  it('writes little-endian bytes', () => {
    expect([...encodeTensor(new Float32Array([1]), 'F16')]).toEqual([0x00, 0x3c]);
    expect([...encodeTensor(new Float32Array([1]), 'BF16')]).toEqual([0x80, 0x3f]);
    expect([...encodeTensor(new Float32Array([1]), 'F32')]).toEqual([0, 0, 0x80, 0x3f]);
  });
});
