import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { WeightsError } from '../errors.js';
import { f32ToBf16Bits } from './dtype.js';
import { openSafetensorsBytes } from './safetensors-bytes.js';
import { openSafetensors } from './safetensors-reader.js';
import { encodeSafetensors } from './safetensors-writer.js';

const fixture = fileURLToPath(new URL('../../../../test/fixtures/hf/seed6-phi3-bf16/model.safetensors', import.meta.url));

/** A hand-built file: u64 length (overridable), header text, `dataBytes` zero bytes. */
function rawBytes(header: string | object, dataBytes: number, headerLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  bytes.set(json, 8);
  return bytes;
}

function expectCode(open: () => unknown, code: string): void {
  try {
    open();
  } catch (error) {
    expect(error).toBeInstanceOf(WeightsError);
    expect(error).toMatchObject({ code, file: 'mem.safetensors' });
    return;
  }
  expect.unreachable(`expected WeightsError '${code}'`);
}

describe('openSafetensorsBytes', () => {
  it('reads every tensor of a real BF16 checkpoint exactly as the file reader does', async () => {
    const bytes = readFileSync(fixture);
    const fromFile = await openSafetensors(fixture);
    const fromBytes = openSafetensorsBytes(bytes, 'seed6');
    expect(fromBytes.names).toEqual(fromFile.names);
    expect(fromBytes.names.length).toBeGreaterThan(5);
    for (const name of fromFile.names) {
      expect(fromBytes.info(name)).toEqual(fromFile.info(name));
      expect(fromBytes.get(name)).toEqual(fromFile.get(name));
    }
    await fromFile.close();
  });

  it('decodes F32, F16 and BF16 from an ArrayBuffer, Uint8Array or an unaligned view', () => {
    const values = [1.5, -2.25, 0.125, 1024];
    const file = encodeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2, 2], data: Float32Array.from(values) },
      { name: 'b', dtype: 'F16', shape: [4], data: Float32Array.from(values) },
      { name: 'c', dtype: 'BF16', shape: [1, 4], data: Float32Array.from(values) },
    ]);
    // Shifted by one byte: every F32 tensor sits at an odd address and must still decode.
    const shifted = new Uint8Array(file.byteLength + 1);
    shifted.set(file, 1);
    const inputs = [file, file.slice().buffer, shifted.subarray(1)];
    for (const input of inputs) {
      const store = openSafetensorsBytes(input);
      expect([...store.get('a', [2, 2])]).toEqual(values);
      expect([...store.get('b')]).toEqual(values);
      expect([...store.get('c', [1, 4])]).toEqual(values.map((v) => new Float32Array(new Uint32Array([f32ToBf16Bits(v) << 16]).buffer)[0]));
      expect(store.info('c')).toEqual({ name: 'c', dtype: 'BF16', shape: [1, 4] });
    }
  });

  it('hands out arrays of their own: changing one does not change the bytes or a later get', () => {
    const bytes = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [3], data: Float32Array.from([1, 2, 3]) }]);
    const before = bytes.slice();
    const store = openSafetensorsBytes(bytes);
    store.get('w').fill(9);
    expect([...store.get('w')]).toEqual([1, 2, 3]);
    expect(bytes).toEqual(before);
  });

  it('rejects malformed files with the file reader\'s codes, naming the file', () => {
    const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });
    expectCode(() => openSafetensorsBytes(new Uint8Array(5), 'mem.safetensors'), 'truncated');
    expectCode(() => openSafetensorsBytes(rawBytes({}, 0, 1000n), 'mem.safetensors'), 'bad-header-length');
    expectCode(() => openSafetensorsBytes(rawBytes('{not json', 0), 'mem.safetensors'), 'bad-header');
    expectCode(() => openSafetensorsBytes(rawBytes({ x: t('I64', [1], 0, 8) }, 8), 'mem.safetensors'), 'unknown-dtype');
    expectCode(() => openSafetensorsBytes(rawBytes({ x: t('F32', [3], 0, 8) }, 8), 'mem.safetensors'), 'size-mismatch');
    expectCode(() => openSafetensorsBytes(rawBytes({ x: t('F32', [1], 0, 4) }, 8), 'mem.safetensors'), 'bad-offsets');
    expectCode(() => openSafetensorsBytes(rawBytes({ x: t('F32', [2], 0, 8) }, 4), 'mem.safetensors'), 'truncated');
    expectCode(() => openSafetensorsBytes('not bytes' as unknown as Uint8Array, 'mem.safetensors'), 'bad-input');
  });

  it('names missing tensors and wrong shapes; after close, get fails with closed', async () => {
    const store = openSafetensorsBytes(encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [2, 3], data: new Float32Array(6) }]), 'mem.safetensors');
    expect(store.has('w')).toBe(true);
    expect(store.has('v')).toBe(false);
    expectCode(() => store.get('v'), 'missing-tensor');
    expectCode(() => store.info('v'), 'missing-tensor');
    expect(() => store.get('w', [3, 2])).toThrow(/has shape \[2, 3\], expected \[3, 2\]/);
    await store.close();
    expectCode(() => store.get('w'), 'closed');
    expect(store.info('w').shape).toEqual([2, 3]);
  });
});
