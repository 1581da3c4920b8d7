import { type HostTensor, hostTensor } from '../runtime/host-tensor.js';
import { activationFuses } from './activation.js';
import type { OpGraph } from './graph.js';
import { acceptsActivation, type GraphOp, withActivation } from './graph.js';

function useCounts(ops: readonly GraphOp[]): Map<string, number> {
  const uses = new Map<string, number>();
  for (const op of ops) for (const i of op.inputs) uses.set(i, (uses.get(i) ?? 0) + 1);
  return uses;
}

/** A value may vanish into a fused op only if nothing else reads it and nobody asked for it. */
function private1(name: string, uses: Map<string, number>, keep: ReadonlySet<string>): boolean {
  return uses.get(name) === 1 && !keep.has(name);
}

/**
 * Folds a per-channel affine (inference BatchNormalization) into the convolution that feeds
 * it: W'[o] = W[o]·s[o], b'[o] = b[o]·s[o] + t[o]. Needs constant weights.
 */
export function foldAffineIntoConv(a: OpGraph, keep: ReadonlySet<string>): OpGraph {
  const uses = useCounts(a.ops);
  const producer = new Map(a.ops.map((op, i) => [op.output, i]));
  const removed = new Set<number>();
  const ops = [...a.ops];
  const constants = new Map(a.constants);
  const shapes = new Map(a.shapes);
  ops.forEach((op, i) => {
    if (op.kind !== 'affine' || op.activation.kind !== 'none') return;
    const pi = producer.get(op.inputs[0]);
    if (pi === undefined || removed.has(pi)) return;
    const conv = ops[pi];
    if (conv.kind !== 'conv' || conv.attrs.activation.kind !== 'none' || !private1(conv.output, uses, keep)) return;
    const w = constants.get(conv.inputs[1]);
    const b = conv.inputs[2] !== undefined ? constants.get(conv.inputs[2]) : undefined;
    const s = constants.get(op.inputs[1]);
    const t = constants.get(op.inputs[2]);
    if (!w || !s || !t || (conv.inputs[2] !== undefined && !b)) return;
    const cout = w.dims[0];
    const per = w.data.length / cout;
    const wf = new Float32Array(w.data.length);
    const bf = new Float32Array(cout);
    for (let o = 0; o < cout; o++) {
      for (let k = 0; k < per; k++) wf[o * per + k] = w.data[o * per + k] * s.data[o];
      bf[o] = (b ? b.data[o] : 0) * s.data[o] + t.data[o];
    }
    const wName = `${conv.inputs[1]}::folded(${op.node.name})`;
    const bName = `${conv.inputs[2] ?? conv.node.name + '::bias'}::folded(${op.node.name})`;
    constants.set(wName, hostTensor('float32', [...w.dims], wf) as HostTensor);
    constants.set(bName, hostTensor('float32', [cout], bf));
    shapes.set(wName, [...w.dims]);
    shapes.set(bName, [cout]);
    ops[pi] = { ...conv, inputs: [conv.inputs[0], wName, bName], output: op.output };
    removed.add(i);
  });
  const kept = ops.filter((_, i) => !removed.has(i));
  return { ...a, ops: kept, shapes, constants: pruneConstants(constants, kept, a.outputs) };
}

/**
 * Fuses a standalone activation into the epilogue of the op that produces its input, when
 * its POINTWISE row allows it (a derivative from y: fusion leaves no x behind).
 */
export function fuseActivations(a: OpGraph, keep: ReadonlySet<string>): OpGraph {
  const uses = useCounts(a.ops);
  const producer = new Map(a.ops.map((op, i) => [op.output, i]));
  const removed = new Set<number>();
  const ops = [...a.ops];
  ops.forEach((op, i) => {
    if (op.kind !== 'unary' || !activationFuses(op.activation)) return;
    const pi = producer.get(op.inputs[0]);
    if (pi === undefined || removed.has(pi)) return;
    const src = ops[pi];
    if (!acceptsActivation(src) || !private1(src.output, uses, keep)) return;
    ops[pi] = withActivation(src, op.activation, op.output);
    removed.add(i);
  });
  return { ...a, ops: ops.filter((_, i) => !removed.has(i)) };
}

/** Drops ops whose results nothing reads (after folding), and constants no op reads. */
export function removeDeadOps(a: OpGraph, keep: ReadonlySet<string>): OpGraph {
  const live = new Set<string>([...a.outputs, ...keep]);
  const out: GraphOp[] = [];
  for (let i = a.ops.length - 1; i >= 0; i--) {
    const op = a.ops[i];
    if (!live.has(op.output)) continue;
    out.push(op);
    for (const x of op.inputs) live.add(x);
  }
  out.reverse();
  return { ...a, ops: out, constants: pruneConstants(a.constants, out, a.outputs) };
}

function pruneConstants(c: Map<string, HostTensor>, ops: readonly GraphOp[], outputs: readonly string[]): Map<string, HostTensor> {
  const used = new Set([...ops.flatMap((o) => o.inputs), ...outputs]);
  return new Map([...c].filter(([k]) => used.has(k)));
}

export function optimize(a: OpGraph, keep: ReadonlySet<string>): OpGraph {
  return removeDeadOps(fuseActivations(foldAffineIntoConv(a, keep), keep), keep);
}
