import { InputError } from '../runtime/errors.js';
import { type IrGraph, resolveAlias } from './ir.js';

/** How a requested layer name was understood. */
export interface ResolvedTap {
  requested: string;
  tensor: string;
  how: 'tensor' | 'node' | 'module' | 'auto';
}

/**
 * The torch module path of a node exported with scoped names. torch names each scope by
 * the module's path relative to its nearest non-container ancestor, so
 * `/layer2/layer2.0/downsample/downsample.1/Conv` is module `layer2.0.downsample.1`; a module
 * called repeatedly gets `_<n>` suffixes (`relu_2`), which are dropped.
 */
export function nodeModulePath(nodeName: string): string | null {
  if (!nodeName.startsWith('/')) return null;
  const segments = nodeName.split('/').slice(1, -1).filter(Boolean);
  if (segments.length === 0) return null;
  let full = '';
  let prev = '';
  for (const seg of segments) {
    if (prev && seg.startsWith(`${prev}.`)) full += seg.slice(prev.length);
    else full = full ? `${full}.${seg}` : seg;
    prev = seg;
  }
  return full.replace(/_\d+(?=$|\.)/g, '');
}

/** Module paths present in the graph, recovered from torch's scoped node names. */
export function modulePaths(g: IrGraph): string[] {
  const out = new Set<string>();
  for (const n of g.nodes) {
    const p = nodeModulePath(n.name);
    if (!p) continue;
    const parts = p.split('.');
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join('.'));
  }
  return [...out];
}

/**
 * Resolves a layer name as SPEC §0 says: an exact tensor name, an exact node name (its
 * first output), or a torch module path (the output of the last node inside its scope).
 */
export function resolveTap(g: IrGraph, name: string): ResolvedTap {
  const tensors = new Set<string>([...g.inputs.map((i) => i.name), ...g.nodes.flatMap((n) => n.outputs)]);
  if (tensors.has(name) || g.aliases.has(name)) return { requested: name, tensor: resolveAlias(g, name), how: 'tensor' };
  const node = g.nodes.find((n) => n.name === name);
  if (node) return { requested: name, tensor: resolveAlias(g, node.outputs[0]), how: 'node' };
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    const p = nodeModulePath(n.name);
    if (p && (p === name || p.startsWith(`${name}.`)) && n.outputs[0]) return { requested: name, tensor: resolveAlias(g, n.outputs[0]), how: 'module' };
  }
  const paths = modulePaths(g);
  const near = paths.filter((p) => p.startsWith(name.split('.')[0])).slice(0, 20);
  throw new InputError(
    `layer '${name}' is not a tensor name, node name or torch module path of ${g.file}` +
      (near.length || paths.length ? `; module paths there include: ${(near.length ? near : paths.slice(0, 20)).join(', ')}` : '; the graph has no torch scope names, use tensor or node names'),
  );
}

/**
 * The default CAM target layer: the output of the last node whose output is 4-D and
 * spatially larger than 1×1 (SPEC §0, target layer "auto").
 */
export function autoTargetLayer(g: IrGraph, shapes: ReadonlyMap<string, readonly number[]>): ResolvedTap {
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const out = g.nodes[i].outputs[0];
    const s = out ? shapes.get(out) : undefined;
    if (s && s.length === 4 && s[2] * s[3] > 1) return { requested: 'auto', tensor: resolveAlias(g, out), how: 'auto' };
  }
  throw new InputError(`${g.file}: no node produces a 4-D spatial map larger than 1x1, so there is no automatic target layer`);
}
