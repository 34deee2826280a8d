import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../errors.js';
import { openSafetensors, parseSafetensorsHeader } from './safetensors-reader.js';
import { writeSafetensors } from './safetensors-writer.js';

let dir: string;
let counter = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ropeswitch-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a hand-built file: u64 length (overridable), header text, `dataBytes` zero bytes. */
async function rawFile(header: string | object, dataBytes: number, headerLength?: bigint): Promise<string> {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const bytes = new Uint8Array(8 + json.byteLength + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, headerLength ?? BigInt(json.byteLength), true);
  bytes.set(json, 8);
  const path = join(dir, `raw-${counter++}.safetensors`);
  await writeFile(path, bytes);
  return path;
}

async function expectCode(path: string, code: string): Promise<void> {
  const promise = openSafetensors(path);
  await expect(promise).rejects.toThrow(WeightsError);
  await expect(promise).rejects.toMatchObject({ code, file: path });
}

const t = (dtype: string, shape: number[], begin: number, end: number) => ({ dtype, shape, data_offsets: [begin, end] });

describe('openSafetensors rejects malformed files with WeightsError', () => {
  it('file shorter than 8 bytes → truncated', async () => {
    const path = join(dir, 'short.safetensors');
    await writeFile(path, new Uint8Array(5));
    await expectCode(path, 'truncated');
  });

  it('header length past the end of the file → bad-header-length', async () => {
    await expectCode(await rawFile({}, 0, 3n), 'bad-header-length');
  });

  it('huge u64 header length (beyond 2^53) → bad-header-length, without allocating', async () => {
    await expectCode(await rawFile({}, 0, 0xffff_ffff_ffff_fff0n), 'bad-header-length');
    await expectCode(await rawFile({}, 0, 2n ** 53n + 1n), 'bad-header-length');
  });

  it('invalid JSON, non-object JSON and invalid UTF-8 → bad-header', async () => {
    await expectCode(await rawFile('{"a": ', 0), 'bad-header');
    await expectCode(await rawFile('[1, 2]', 0), 'bad-header');
    // Valid JSON under lossy decoding; only strict UTF-8 decoding catches the 0xff byte.
    const path = await rawFile('{"__metadata__": {"k": "ab"}}', 0);
    const bytes = await readFile(path);
    bytes[8 + '{"__metadata__": {"k": "'.length] = 0xff;
    await writeFile(path, bytes);
    await expectCode(path, 'bad-header');
  });

  it('malformed entries → bad-header', async () => {
    await expectCode(await rawFile({ x: 5 }, 4), 'bad-header');
    await expectCode(await rawFile({ x: { shape: [1], data_offsets: [0, 4] } }, 4), 'bad-header');
    await expectCode(await rawFile({ x: t('F32', [-1], 0, 4) }, 4), 'bad-header');
    await expectCode(await rawFile({ x: t('F32', [1.5], 0, 4) }, 4), 'bad-header');
    await expectCode(await rawFile({ x: t('F32', [1], 4, 0) }, 4), 'bad-header');
    await expectCode(await rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), 'bad-header');
    await expectCode(await rawFile({ __metadata__: { n: 1 } }, 0), 'bad-header');
  });

  it("unknown dtype 'I64' → unknown-dtype naming it and the supported ones", async () => {
    const path = await rawFile({ ids: t('I64', [2], 0, 16) }, 16);
    await expectCode(path, 'unknown-dtype');
    await expect(openSafetensors(path)).rejects.toMatchObject({ tensor: 'ids', message: expect.stringMatching(/I64.*F32, F16, BF16/) });
  });

  it('byte length not dtype size × elements → size-mismatch', async () => {
    await expectCode(await rawFile({ x: t('F16', [3], 0, 8) }, 8), 'size-mismatch');
    // element count overflowing 2^53 must not wrap around to a matching size
    await expectCode(await rawFile({ x: t('F32', [2 ** 30, 2 ** 30, 2 ** 30], 0, 0) }, 0), 'size-mismatch');
  });

  it('gaps, overlaps and trailing bytes → bad-offsets', async () => {
    await expectCode(await rawFile({ a: t('F32', [1], 0, 4), b: t('F32', [1], 8, 12) }, 12), 'bad-offsets');
    await expectCode(await rawFile({ a: t('F32', [2], 0, 8), b: t('F32', [1], 4, 8) }, 8), 'bad-offsets');
    await expectCode(await rawFile({ a: t('F32', [1], 4, 8) }, 8), 'bad-offsets');
    await expectCode(await rawFile({ a: t('F32', [1], 0, 4) }, 6), 'bad-offsets');
  });

  it('offsets past the end of the data section → truncated', async () => {
    await expectCode(await rawFile({ a: t('F32', [1], 0, 4), b: t('F32', [4], 4, 20) }, 10), 'truncated');
  });

  it('missing file → missing-file', async () => {
    await expectCode(join(dir, 'nope.safetensors'), 'missing-file');
  });
});

describe('store access', () => {
  it('missing tensor and shape mismatch name the tensor and shapes', async () => {
    const path = join(dir, 'ok.safetensors');
    await writeSafetensors(path, [{ name: 'w', dtype: 'F32', shape: [2, 3], data: new Float32Array(6) }]);
    const store = await openSafetensors(path);
    expect(store.has('w')).toBe(true);
    expect(store.has('v')).toBe(false);
    expect(() => store.info('v')).toThrow(expect.objectContaining({ code: 'missing-tensor', tensor: 'v' }));
    expect(() => store.get('v')).toThrow(WeightsError);
    expect(() => store.get('w', [3, 2])).toThrow(WeightsError);
    expect(() => store.get('w', [2, 3, 1])).toThrow(
      expect.objectContaining({ code: 'shape-mismatch', tensor: 'w', message: expect.stringMatching(/\[2, 3\].*\[2, 3, 1\]/) }),
    );
    expect(store.get('w', [2, 3])).toHaveLength(6);
    await store.close();
  });
});

describe('parseSafetensorsHeader', () => {
  const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

  it('returns entries in data order', () => {
    const header = enc({ b: t('BF16', [2], 8, 12), a: t('F32', [2], 0, 8), z: t('F16', [0], 8, 8) });
    const entries = parseSafetensorsHeader(header, 8 + header.byteLength + 12, 'mem');
    expect([...entries.keys()]).toEqual(['a', 'z', 'b']);
    expect(entries.get('b')).toMatchObject({ dtype: 'BF16', shape: [2], begin: 8, end: 12 });
  });

  it('only ever throws WeightsError on random bytes and random JSON', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const values = [0, 1, 4, -1, 2 ** 60, 1.5, 'x', null, [], {}, [0, 4], [4, 0], [1, 2, 3], 'F32', 'BF16'];
    for (let i = 0; i < 2000; i++) {
      let header: Uint8Array;
      if (i % 2 === 0) {
        header = new Uint8Array(Math.floor(rand() * 40)).map(() => Math.floor(rand() * 256));
      } else {
        const entry = { dtype: pick([...values, 'F16']), shape: pick(values), data_offsets: pick(values) };
        header = enc({ [pick(['a', '__metadata__', '__proto__'])]: rand() < 0.2 ? pick(values) : entry });
      }
      try {
        parseSafetensorsHeader(header, Math.floor(rand() * 64) + header.byteLength + 8, 'fuzz');
      } catch (err) {
        expect(err).toBeInstanceOf(WeightsError);
      }
    }
  });
});
