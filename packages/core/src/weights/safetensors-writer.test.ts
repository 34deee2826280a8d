import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../errors.js';
import { openSafetensors } from './safetensors-reader.js';
import { encodeSafetensors, writeSafetensors } from './safetensors-writer.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ropeswitch-writer-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeSafetensors → openSafetensors', () => {
  it('round-trips values exactly representable in each dtype', async () => {
    // Representable in all three dtypes, plus values only the wider/other formats hold.
    const shared = [0, -0, 1, -2.5, 0.099609375, 2 ** -14, -(2 ** -24), 3 * 2 ** -24, Infinity, -Infinity];
    const f32 = new Float32Array([...shared, Math.fround(Math.PI), 1e-45, 3.4e38, 65504]);
    const f16 = new Float32Array([...shared, 65504, 1023 * 2 ** -24, 1 + 2 ** -10]);
    const bf16 = new Float32Array([...shared, 1.0078125, 3.3895313892515355e38, 2 ** -133]);
    const path = join(dir, 'roundtrip.safetensors');
    await writeSafetensors(
      path,
      [
        { name: 'a.f32', dtype: 'F32', shape: [2, 7], data: f32 },
        { name: 'b.f16', dtype: 'F16', shape: [f16.length], data: f16 },
        { name: 'c.bf16', dtype: 'BF16', shape: [1, bf16.length], data: bf16 },
        { name: 'd.empty', dtype: 'F16', shape: [0, 3], data: new Float32Array(0) },
        { name: 'e.scalar', dtype: 'F32', shape: [], data: new Float32Array([7]) },
      ],
      { format: 'pt' },
    );
    const store = await openSafetensors(path);
    expect(store.names).toEqual(['a.f32', 'b.f16', 'c.bf16', 'd.empty', 'e.scalar']);
    expect(store.info('c.bf16')).toEqual({ name: 'c.bf16', dtype: 'BF16', shape: [1, bf16.length] });
    expect(store.get('a.f32', [2, 7])).toEqual(f32);
    expect(store.get('b.f16')).toEqual(f16);
    expect(store.get('c.bf16', [1, bf16.length])).toEqual(bf16);
    expect(store.get('d.empty')).toEqual(new Float32Array(0));
    expect(store.get('e.scalar', [])).toEqual(new Float32Array([7]));
    await store.close();
    await store.close(); // idempotent
    expect(() => store.get('a.f32')).toThrow(WeightsError);
  });

  it('rounds to the target dtype on write', async () => {
    const path = join(dir, 'rounding.safetensors');
    const data = new Float32Array([1.00390625, 1.01171875, 1 + 2 ** -11, 70000]);
    await writeSafetensors(path, [
      { name: 'bf', dtype: 'BF16', shape: [4], data },
      { name: 'h', dtype: 'F16', shape: [4], data },
    ]);
    const store = await openSafetensors(path);
    expect(store.get('bf')).toEqual(new Float32Array([1, 1.015625, 1, 70144]));
    expect(store.get('h')).toEqual(new Float32Array([1.00390625, 1.01171875, 1, Infinity])); // f16 holds 2^-8 steps exactly;
    await store.close();
  });

  it('aligns the data section to 8 bytes and records metadata', () => {
    const bytes = encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array([1]) }], { format: 'pt' });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    expect(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))).toEqual({
      __metadata__: { format: 'pt' },
      x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    });
  });

  it('rejects inconsistent input with WeightsError', () => {
    const one = new Float32Array([1]);
    const cases: [string, Parameters<typeof encodeSafetensors>[0]][] = [
      ['size-mismatch', [{ name: 'x', dtype: 'F32', shape: [2], data: one }]],
      ['bad-tensor', [{ name: 'x', dtype: 'F32', shape: [1], data: one }, { name: 'x', dtype: 'F32', shape: [1], data: one }]],
      ['bad-tensor', [{ name: '__metadata__', dtype: 'F32', shape: [1], data: one }]],
      ['bad-tensor', [{ name: 'x', dtype: 'F32', shape: [-1], data: one }]],
      ['unknown-dtype', [{ name: 'x', dtype: 'I64' as 'F32', shape: [1], data: one }]],
    ];
    for (const [code, tensors] of cases) {
      expect(() => encodeSafetensors(tensors)).toThrow(WeightsError);
      expect(() => encodeSafetensors(tensors)).toThrow(expect.objectContaining({ code }));
    }
  });
});
