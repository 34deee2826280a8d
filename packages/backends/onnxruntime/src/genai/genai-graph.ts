/**
 * A small graph assembler for the genai writer: nodes in topological order (as the builder sorts
 * them), its `/model/constants/...` Constant nodes made once each, and float initializers (the
 * writer moves every one to external data, as the builder's `size_threshold_bytes=0` does).
 */
import type { onnx as O } from 'onnx-proto';
import { type AttributeValue, attr, makeNode } from '../onnx/graph-nodes.js';
import { floatTensor, int64Tensor } from '../onnx/tensor-proto.js';

export class GraphAssembly {
  readonly nodes: O.INodeProto[] = [];
  readonly initializers: O.ITensorProto[] = [];
  private readonly constants = new Set<string>();

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

  /** A float32 initializer (its raw data views `data`: keep it unchanged until the model is written). */
  initializer(name: string, data: Float32Array, dims: readonly number[]): string {
    this.initializers.push(floatTensor(name, data, dims));
    return name;
  }
}
