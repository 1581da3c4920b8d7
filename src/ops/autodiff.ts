import { InputError } from '../runtime/errors.js';
import { formatShape } from '../runtime/shape.js';
import type { Activation } from './activation.js';
import type { GraphOp, OpOrigin } from './graph.js';
import { type OpKind, opDef, type VjpContext } from './registry.js';
import type { Sym, Tape } from './tape.js';

/**
 * Reverse mode on a tape: appends, for every recorded op between the `wrt` tensors and
 * the seeded outputs, the ops of its vector-Jacobian product (its backward rule), summing
 * the contributions of tensors read more than once. Seeds are the gradients of the
 * objective with respect to outputs (for an objective linear in the outputs, such as
 * Σ w·logits, the seed is w). Returns the gradient tensor of every `wrt` tensor that
 * the seeds depend on (absent: the objective does not depend on it).
 */
export interface GradientOptions {
  /**
   * Route every gradient as the exact computation would (default true): the tape's forward
   * convolutions avoid Winograd F(4×4), whose ~1e-5 relative error can flip a max-pool or
   * ReLU decision near a tie. Every gradient program gets this unless it opts out.
   */
  exactRouting?: boolean;
  /**
   * Guided Backprop's modified ReLU backward: the gradient passes a ReLU only where both its
   * output and the incoming gradient are positive (Springenberg et al.), i.e. relu'(y)·relu(g).
   */
  guided?: boolean;
}

export function gradients(tape: Tape, seeds: ReadonlyMap<string, Sym>, wrt: readonly string[], options: GradientOptions = {}): Map<string, Sym> {
  const g = tape.graph;
  if (options.exactRouting !== false) {
    g.ops.forEach((op, i) => {
      if (op.kind === 'conv' && op.attrs.winograd4 !== false) g.ops[i] = { ...op, attrs: { ...op.attrs, winograd4: false } };
    });
  }
  for (const [o, s] of seeds) {
    const shape = g.shapes.get(o);
    if (!shape) throw new InputError(`cannot seed '${o}': not a tensor of the tape`);
    if (formatShape(shape) !== formatShape(s.shape)) throw new InputError(`seed of '${o}' has shape ${formatShape(s.shape)}, the tensor ${formatShape(shape)}`);
  }
  // Forward: which tensors depend on a wrt tensor. Backward: which ops feed a seeded output.
  const dependsOnWrt = new Set(wrt);
  const recorded = [...g.ops];
  for (const op of recorded) if (op.inputs.some((i) => dependsOnWrt.has(i))) dependsOnWrt.add(op.output);
  const feedsSeed = new Set(seeds.keys());
  for (let i = recorded.length - 1; i >= 0; i--) {
    const op = recorded[i];
    if (feedsSeed.has(op.output)) for (const x of op.inputs) feedsSeed.add(x);
  }
  const contributions = new Map<string, Sym[]>();
  const contribute = (name: string, grad: Sym) => {
    if (!dependsOnWrt.has(name) || !feedsSeed.has(name)) return;
    const list = contributions.get(name) ?? [];
    list.push(grad);
    contributions.set(name, list);
  };
  for (const [o, s] of seeds) contribute(o, s);
  const total = (name: string): Sym | null => {
    const list = contributions.get(name);
    if (!list || list.length === 0) return null;
    let sum = list[0];
    for (const c of list.slice(1)) sum = tape.add(sum, c);
    contributions.set(name, [sum]);
    return sum;
  };
  for (let i = recorded.length - 1; i >= 0; i--) {
    const op = recorded[i];
    const gy = total(op.output);
    if (!gy) continue;
    const need = (k: number) => dependsOnWrt.has(op.inputs[k]) && feedsSeed.has(op.inputs[k]);
    if (!op.inputs.some((_, k) => need(k))) continue;
    backward(tape, op, gy, need, contribute, options.guided === true);
  }
  const out = new Map<string, Sym>();
  for (const w of wrt) {
    const t = total(w);
    if (t) out.set(w, t);
  }
  return out;
}

function origin(op: GraphOp, what: string): OpOrigin {
  return { name: `${op.node.name}/grad${what ? `_${what}` : ''}`, opType: `${op.node.opType}Grad` };
}

/** The ops of one op's vector-Jacobian product, by its kind's rule in the registry. */
function backward(tape: Tape, op: GraphOp, gy: Sym, need: (k: number) => boolean, contribute: (name: string, g: Sym) => void, guided: boolean): void {
  const rule = opDef(op).vjp;
  if (rule === 'zero') return;
  if (rule === 'none') throw new InputError(`no gradient for ${op.kind} ('${op.node.name}'): second-order gradients are not supported`);
  const y = tape.sym(op.output);
  const context: VjpContext<OpKind> = {
    op,
    tape,
    gy,
    y,
    x: (k) => tape.sym(op.inputs[k]),
    need,
    give: (k, g) => contribute(op.inputs[k], g),
    origin: (what) => origin(op, what),
    // Fused activations are differentiated from their output: fusion leaves nothing else.
    preActivation: (activation: Activation) => {
      if (activation.kind === 'none') return gy;
      const g = guided && activation.kind === 'relu' ? tape.activation(gy, { kind: 'relu' }) : gy;
      return tape.record({ kind: 'activation_grad', activation, inputs: [y.name, g.name] }, y.shape, origin(op, 'act'));
    },
  };
  (rule as (c: VjpContext<OpKind>) => void)(context);
}
