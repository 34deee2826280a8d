import type { onnx as O } from 'onnx-proto';
import { type AttributeValue, makeNode } from '../onnx/graph-nodes.js';
import { floatTensor, int64Tensor } from '../onnx/tensor-proto.js';

/**
 * Where a weight initializer goes once built: kept in the graph as it is, or written to a side file
 * at once and replaced by an external-data reference (see `ExternalDataWriter`), so a model larger
 * than memory never exists in memory as a whole.
 */
export type InitializerSink = (tensor: O.ITensorProto) => O.ITensorProto;

/**
 * Accumulates the nodes and initializers of one graph: `op` adds a node and returns its output
 * name (unique, prefixed by the current scope), constants are deduplicated by value. Weights pass
 * through the builder's {@link InitializerSink} as they are added.
 */
export class GraphBuilder {
  readonly nodes: O.INodeProto[] = [];
  readonly initializers: O.ITensorProto[] = [];
  private readonly constants = new Map<string, string>();
  private counter = 0;
  /** Prefix of generated names (e.g. `/layers.3/attn`). */
  scope = '';

  /** @param sink What happens to each weight (default: it stays in the graph). */
  constructor(private readonly sink: InitializerSink = (t) => t) {}

  /** Adds a node with one output; returns the output's name. `domain` '' is ai.onnx. */
  op(opType: string, inputs: readonly string[], attrs: Readonly<Record<string, AttributeValue>> = {}, outputName?: string, domain = ''): string {
    const out = outputName ?? this.fresh(opType);
    this.nodes.push(makeNode(opType, inputs, [out], attrs, { name: `${out}/${opType}`, domain }));
    return out;
  }

  /** Adds a node with several outputs (e.g. Split); returns their names. */
  opN(opType: string, inputs: readonly string[], outputs: number, attrs: Readonly<Record<string, AttributeValue>> = {}): string[] {
    const base = this.fresh(opType);
    const names = Array.from({ length: outputs }, (_, i) => `${base}_${i}`);
    this.nodes.push(makeNode(opType, inputs, names, attrs, { name: `${base}/${opType}` }));
    return names;
  }

  /** An int64 constant (1-D unless `dims` says otherwise), shared by every use of the same values. */
  int64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_i64_${this.constants.size}`;
      this.initializers.push(int64Tensor(name, values, dims));
      this.constants.set(key, name);
    }
    return name;
  }

  /** A float32 scalar constant (rank 0). */
  float(value: number): string {
    const key = `f32:${Object.is(value, -0) ? '-0' : String(value)}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const_f32_${this.constants.size}`;
      this.initializers.push(floatTensor(name, Float32Array.of(value), []));
      this.constants.set(key, name);
    }
    return name;
  }

  /** A named float32 weight initializer, handed to the sink (`data` may be dropped once this returns). */
  weight(name: string, data: Float32Array, dims: readonly number[]): string {
    return this.tensor(floatTensor(name, data, dims));
  }

  /** A named weight initializer of any element type (e.g. packed uint8 quantized blocks), handed to the sink. */
  tensor(t: O.ITensorProto): string {
    this.initializers.push(this.sink(t));
    return t.name ?? '';
  }

  private fresh(opType: string): string {
    return `${this.scope}/${opType}_${this.counter++}`;
  }
}
