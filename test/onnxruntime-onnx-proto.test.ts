import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import {
  DataType,
  attr,
  decodeModel,
  encodeModel,
  externalDataEntries,
  floatTensor,
  int32Tensor,
  int64Tensor,
  isExternal,
  makeModel,
  makeNode,
  readAttribute,
  readExternalDataLocation,
  readModel,
  readValueInfo,
  tensorDims,
  tensorToArray,
  valueInfo,
  writeModel,
} from '@ropeswitch/backend-onnxruntime';
import { WeightsError } from '@ropeswitch/core';
import { describe, expect, it } from 'vitest';
import { scratchDirs } from './support/onnxruntime.js';

/** The part of onnxruntime-node used here (a dependency of the backend package, loaded from there). */
interface OrtApi {
  InferenceSession: { create(path: string): Promise<{ run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>; release(): Promise<void> }> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}
const ort = createRequire(new URL('../packages/backends/onnxruntime/package.json', import.meta.url))('onnxruntime-node') as OrtApi;

const tempDir = scratchDirs('ropeswitch-onnx-proto-');

/** y = x + w (w an initializer of `n` floats), a model onnxruntime can run. */
function addModel(w: Float32Array) {
  return makeModel({
    name: 'add',
    nodes: [makeNode('Add', ['x', 'w'], ['y'])],
    inputs: [valueInfo('x', DataType.FLOAT, ['batch', w.length])],
    outputs: [valueInfo('y', DataType.FLOAT, ['batch', w.length])],
    initializers: [floatTensor('w', w, [w.length])],
  });
}

describe('tensor-proto', () => {
  it('float, int32 and int64 tensors survive encode → decode with their dims and values', () => {
    const f = Float32Array.from({ length: 6 }, (_, i) => i * 0.5 - 1);
    const model = makeModel({
      name: 'g',
      nodes: [],
      inputs: [],
      outputs: [],
      initializers: [floatTensor('f', f, [2, 3]), int32Tensor('i', [1, -2, 3], [3]), int64Tensor('l', [2 ** 40, -5], [2])],
    });
    const back = decodeModel(encodeModel(model)).graph!.initializer!;
    expect(back.map((t) => tensorDims(t))).toEqual([[2, 3], [3], [2]]);
    expect(Array.from(tensorToArray(back[0]!) as Float32Array)).toEqual(Array.from(f));
    expect(Array.from(tensorToArray(back[1]!) as Int32Array)).toEqual([1, -2, 3]);
    expect(Array.from(tensorToArray(back[2]!) as BigInt64Array)).toEqual([2n ** 40n, -5n]);
  });

  it('rejects dims that do not hold the data, and external locations outside the model folder', () => {
    expect(() => floatTensor('x', new Float32Array(5), [2, 3])).toThrow(WeightsError);
    for (const location of ['../escape.bin', '/etc/passwd', '']) {
      const t = { name: 't', dataType: DataType.FLOAT, dims: [1], dataLocation: 1, externalData: externalDataEntries({ location, offset: 0, length: 4 }) };
      expect(() => readExternalDataLocation(t)).toThrow(WeightsError);
    }
  });
});

describe('graph-nodes', () => {
  it('typed attributes and symbolic dims read back as written', () => {
    const node = makeNode('Foo', ['a', ''], ['b'], { i: attr.int(3), f: attr.float(1), s: attr.string('x'), is: attr.ints([0, 2, 1]) }, { domain: 'com.microsoft', name: 'n' });
    const back = decodeModel(encodeModel(makeModel({ name: 'g', nodes: [node], inputs: [valueInfo('a', DataType.INT64, ['sequence', 4])], outputs: [], initializers: [] }))).graph!;
    const n = back.node![0]!;
    expect([n.domain, n.name, n.input]).toEqual(['com.microsoft', 'n', ['a', '']]);
    expect(readAttribute(n, 'i')).toBe(3);
    expect(readAttribute(n, 'f')).toBe(1);
    expect(readAttribute(n, 's')).toBe('x');
    expect(readAttribute(n, 'is')).toEqual([0, 2, 1]);
    expect(readAttribute(n, 'missing')).toBeUndefined();
    expect(readValueInfo(back.input![0]!)).toEqual({ name: 'a', elemType: DataType.INT64, dims: ['sequence', 4] });
  });
});

describe('model-proto', () => {
  it('writes small models inline and runs them in onnxruntime', async () => {
    const dir = tempDir();
    const written = writeModel(join(dir, 'add.onnx'), addModel(Float32Array.of(1, 2, 3)));
    expect(written.externalDataPath).toBeUndefined();
    expect(readdirSync(dir)).toEqual(['add.onnx']);
    const session = await ort.InferenceSession.create(written.modelPath);
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(10, 20, 30), [1, 3]) });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([11, 22, 33]);
    await session.release();
  });

  it('moves initializers past the inline limit to one aligned side file named relative to the model, which onnxruntime loads', async () => {
    const dir = tempDir();
    const w = Float32Array.from({ length: 2000 }, (_, i) => i);
    const model = addModel(w);
    const written = writeModel(join(dir, 'big.onnx'), model, { inlineLimitBytes: 1000 });
    expect(written.externalDataPath).toBe(join(dir, 'big.onnx.data'));
    expect(statSync(written.externalDataPath!).size).toBe(8000);
    // The caller's model is left as it was; the written one points at the side file.
    expect(isExternal(model.graph!.initializer![0]!)).toBe(false);
    const back = readModel(written.modelPath).graph!.initializer![0]!;
    expect(isExternal(back)).toBe(true);
    expect(readExternalDataLocation(back)).toEqual({ location: 'big.onnx.data', offset: 0, length: 8000 });
    expect(Array.from(tensorToArray(back, dir) as Float32Array)).toEqual(Array.from(w));
    const session = await ort.InferenceSession.create(written.modelPath);
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(2000).fill(1), [1, 2000]) });
    expect((out.y!.data as Float32Array)[1999]).toBe(2000);
    await session.release();
  });

  it('reading a missing or corrupt model file fails with a WeightsError naming it', () => {
    const dir = tempDir();
    expect(() => readModel(join(dir, 'none.onnx'))).toThrow(/none\.onnx/);
    expect(existsSync(join(dir, 'none.onnx'))).toBe(false);
  });
});
