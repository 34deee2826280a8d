/**
 * A small graph assembler for the genai writer: nodes in topological order (as the builder sorts
 * them), its `/model/constants/...` Constant nodes made once each, and float initializers in float32
 * or float16 (the writer moves every one to external data, as the builder's `size_threshold_bytes=0` does).
 */
import type { onnx as O } from 'onnx-proto';
import { type AttributeValue, attr, makeNode } from '../onnx/graph-nodes.js';
import { f32ToF16Bits } from '@ropeswitch/core';
import { DataType } from '../onnx/onnx-namespace.js';
import { float16Tensor, floatTensor, int64Tensor } from '../onnx/tensor-proto.js';

/** A graph under construction in the builder's style. */
export class GraphAssembly {
  readonly nodes: O.INodeProto[] = [];
  readonly initializers: O.ITensorProto[] = [];
  private readonly constants = new Set<string>();

  /** @param floatType The element type float data is stored in: float32, or float16 (the `q4f16` layout). */
  constructor(readonly floatType: typeof DataType.FLOAT | typeof DataType.FLOAT16 = DataType.FLOAT) {}

  /** Appends a node named `name`; returns its first output. */
  node(opType: string, name: string, inputs: readonly string[], outputs: readonly string[], attrs: Readonly<Record<string, AttributeValue>> = {}, domain = ''): string {
    this.nodes.push(makeNode(opType, inputs, outputs, attrs, { name, domain }));
    return outputs[0] ?? '';
  }

  /** The builder's `/model/constants/INT64/<value>` Constant (made once), e.g. `1` (scalar) or `[1]`. */
  int64Constant(value: number | readonly number[]): string {
    const scalar = typeof value === 'number';
    const name = `/model/constants/INT64/${scalar ? String(value) : `[${value.join(', ')}]`}`;
    if (!this.constants.has(name)) {
      this.constants.add(name);
      const values = scalar ? [value] : value;
      this.node('Constant', name.replace('constants', 'constant_nodes'), [], [name], { value: attr.tensor(int64Tensor(name, values, scalar ? [] : [values.length])) });
    }
    return name;
  }

  /** A float initializer in {@link floatType} (float32: its raw data views `data`, keep it unchanged until the model is written). */
  initializer(name: string, data: Float32Array, dims: readonly number[]): string {
    return this.tensor(this.floatTensor(name, data, dims));
  }

  /** A float tensor in {@link floatType} (for Constant nodes as well as initializers). */
  floatTensor(name: string, data: Float32Array, dims: readonly number[]): O.ITensorProto {
    return this.floatType === DataType.FLOAT16 ? float16Tensor(name, Uint16Array.from(data, (x) => f32ToF16Bits(x)), dims) : floatTensor(name, data, dims);
  }

  /** An initializer of any element type (e.g. packed `MatMulNBits` blocks). */
  tensor(t: O.ITensorProto): string {
    this.initializers.push(t);
    return t.name ?? '';
  }
}
