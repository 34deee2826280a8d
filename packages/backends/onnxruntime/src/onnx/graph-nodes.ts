/**
 * NodeProto and ValueInfoProto building: nodes with typed attributes, graph inputs/outputs with
 * fixed or symbolic dims, and attribute reading for graph rewrites.
 */
import type { onnx as O } from 'onnx-proto';
import { int64ToNumber, onnx } from './onnx-namespace.js';

const A = onnx.AttributeProto.AttributeType;

/** An attribute value, tagged with its ONNX type (a JS number alone cannot tell INT from FLOAT). */
export type AttributeValue =
  | { readonly kind: 'int'; readonly value: number }
  | { readonly kind: 'float'; readonly value: number }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'ints'; readonly value: readonly number[] }
  | { readonly kind: 'floats'; readonly value: readonly number[] }
  | { readonly kind: 'tensor'; readonly value: O.ITensorProto }
  | { readonly kind: 'graph'; readonly value: O.IGraphProto };

/** Constructors of {@link AttributeValue}s: `attr.int(1)`, `attr.float(1e-5)`, `attr.ints([0, 2, 1])`. */
export const attr = {
  int: (value: number): AttributeValue => ({ kind: 'int', value }),
  float: (value: number): AttributeValue => ({ kind: 'float', value }),
  string: (value: string): AttributeValue => ({ kind: 'string', value }),
  ints: (value: readonly number[]): AttributeValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttributeValue => ({ kind: 'floats', value }),
  tensor: (value: O.ITensorProto): AttributeValue => ({ kind: 'tensor', value }),
  graph: (value: O.IGraphProto): AttributeValue => ({ kind: 'graph', value }),
};

/** Encodes one attribute. */
export function makeAttribute(name: string, v: AttributeValue): O.IAttributeProto {
  switch (v.kind) {
    case 'int':
      return { name, type: A.INT, i: v.value };
    case 'float':
      return { name, type: A.FLOAT, f: v.value };
    case 'string':
      return { name, type: A.STRING, s: new TextEncoder().encode(v.value) };
    case 'ints':
      return { name, type: A.INTS, ints: [...v.value] };
    case 'floats':
      return { name, type: A.FLOATS, floats: [...v.value] };
    case 'tensor':
      return { name, type: A.TENSOR, t: v.value };
    case 'graph':
      return { name, type: A.GRAPH, g: v.value };
  }
}

/** Where a node comes from: its operator set domain (`''` = ai.onnx, `'com.microsoft'`) and a name. */
export interface NodeOptions {
  readonly domain?: string;
  readonly name?: string;
}

/**
 * One node. `inputs` may contain `''` for an omitted optional input. Attributes are written in
 * key order of `attrs`.
 */
export function makeNode(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attrs: Readonly<Record<string, AttributeValue>> = {},
  options: NodeOptions = {},
): O.INodeProto {
  return onnx.NodeProto.create({
    opType,
    input: [...inputs],
    output: [...outputs],
    attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    domain: options.domain ?? '',
    name: options.name ?? outputs[0] ?? opType,
  });
}

/** A dim: a fixed size, or a symbolic name (`'sequence'`) shared by every input that has it. */
export type Dim = number | string;

/** A tensor value info (graph input or output) of element type `elemType` (see `DataType`). */
export function valueInfo(name: string, elemType: number, dims: readonly Dim[]): O.IValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

/** The element type and dims (symbolic names as strings, unknown as `'?'`) of a tensor value info. */
export function readValueInfo(v: O.IValueInfoProto): { name: string; elemType: number; dims: Dim[] } {
  const t = v.type?.tensorType;
  return {
    name: v.name ?? '',
    elemType: t?.elemType ?? 0,
    dims: (t?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== null && d.dimValue !== undefined ? int64ToNumber(d.dimValue) : '?')),
  };
}

/** An attribute of `node` decoded to a plain value, or `undefined` if absent. */
export function readAttribute(node: O.INodeProto, name: string): number | string | number[] | O.ITensorProto | O.IGraphProto | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  if (!a) return undefined;
  switch (a.type) {
    case A.INT:
      return int64ToNumber(a.i);
    case A.FLOAT:
      return a.f ?? 0;
    case A.STRING:
      return new TextDecoder().decode(a.s ?? new Uint8Array());
    case A.INTS:
      return (a.ints ?? []).map((x) => int64ToNumber(x));
    case A.FLOATS:
      return [...(a.floats ?? [])];
    case A.TENSOR:
      return a.t ?? undefined;
    case A.GRAPH:
      return a.g ?? undefined;
    default:
      return undefined;
  }
}
