/**
 * Editing a decoded onnxruntime-genai graph in place: the message shapes protobufjs decodes to, dead
 * node removal, attribute reading. Shared by the rotary-table adapter and the attention rewrite.
 */
import type { onnx as O } from 'onnx-proto';
import { readAttribute } from '../onnx/graph-nodes.js';

/** A decoded graph, typed as protobufjs decodes it. */
export interface Graph {
  node: Node[];
  input: O.IValueInfoProto[];
  output: O.IValueInfoProto[];
  valueInfo: O.IValueInfoProto[];
  initializer: O.ITensorProto[];
}
/** A decoded node. */
export interface Node {
  name: string;
  opType: string;
  domain: string;
  input: string[];
  output: string[];
  attribute: O.IAttributeProto[];
}

/** Drops nodes none of whose outputs is consumed (by a node, a subgraph or a graph output), until none is left. */
export function removeDeadNodes(graph: Graph): string[] {
  const removed: string[] = [];
  for (;;) {
    const used = new Set<string>(graph.output.map((o) => o.name ?? ''));
    for (const n of graph.node) collectInputs(n, used);
    const dead = graph.node.filter((n) => n.output.every((o) => o === '' || !used.has(o)));
    if (dead.length === 0) return removed;
    removed.push(...dead.map((n) => n.name));
    graph.node = graph.node.filter((n) => !dead.includes(n));
  }
}

function collectInputs(node: O.INodeProto | Node, into: Set<string>): void {
  for (const i of node.input ?? []) into.add(i);
  for (const a of node.attribute ?? []) {
    for (const g of [a.g, ...(a.graphs ?? [])]) for (const n of g?.node ?? []) collectInputs(n, into);
  }
}

/** An int attribute of `node` (0 when absent). */
export function intAttr(node: Node, name: string): number {
  const v = readAttribute(node, name);
  return typeof v === 'number' ? v : 0;
}
