import type { HostTensor } from '../runtime/host-tensor.js';

export type AttrValue = number | number[] | string | string[] | HostTensor | { graph: string };

export interface IrNode {
  /** Unique, never empty (unnamed nodes get `<OpType>_<index>`). */
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Map<string, AttrValue>;
}

export interface IrValueInfo {
  name: string;
  /** Declared dims: numbers, symbolic names, or null when unknown. */
  dims: (number | string | null)[] | null;
  elemType: number;
}

/** A model as camgpu holds it: nodes in topological order, initializers on the CPU. */
export interface IrGraph {
  /** Where the model came from, for error messages. */
  file: string;
  /** Opset of the default domain. */
  opset: number;
  producer: string;
  nodes: IrNode[];
  /** Graph inputs that are not initializers. */
  inputs: IrValueInfo[];
  outputs: IrValueInfo[];
  initializers: Map<string, HostTensor>;
  /** Tensor names removed by graph passes, mapped to the tensor that now carries their value. */
  aliases: Map<string, string>;
}

export function attrNumber(n: IrNode, key: string, dflt: number): number {
  const v = n.attrs.get(key);
  return typeof v === 'number' ? v : dflt;
}

export function attrInts(n: IrNode, key: string, dflt: number[] | null): number[] | null {
  const v = n.attrs.get(key);
  return Array.isArray(v) ? (v as number[]) : dflt;
}

export function attrString(n: IrNode, key: string, dflt: string): string {
  const v = n.attrs.get(key);
  return typeof v === 'string' ? v : dflt;
}

/** Follows pass-created aliases to the tensor that carries a value. */
export function resolveAlias(g: IrGraph, name: string): string {
  let cur = name;
  for (let i = 0; i < 1000 && g.aliases.has(cur); i++) cur = g.aliases.get(cur)!;
  return cur;
}
