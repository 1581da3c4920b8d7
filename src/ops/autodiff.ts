import { InputError } from '../runtime/errors.js';
import { formatShape } from '../runtime/shape.js';
import { type Activation, NO_ACTIVATION } from './activation.js';
import type { GraphOp, OpOrigin } from './graph.js';
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
    backward(tape, op, gy, need, contribute);
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

/** The ops of one op's vector-Jacobian product. */
function backward(tape: Tape, op: GraphOp, gy: Sym, need: (k: number) => boolean, contribute: (name: string, g: Sym) => void): void {
  const s = (name: string) => tape.sym(name);
  const y = s(op.output);
  /** The gradient before a fused activation, computed from the activation's output. */
  const preActivation = (activation: Activation): Sym =>
    activation.kind === 'none' ? gy : tape.record({ kind: 'activation_grad', activation, inputs: [y.name, gy.name] }, y.shape, origin(op, 'act'));
  switch (op.kind) {
    case 'alias':
      contribute(op.inputs[0], tape.reshape(gy, s(op.inputs[0]).shape));
      return;
    case 'unary':
      contribute(op.inputs[0], preActivation(op.activation));
      return;
    case 'conv': {
      const gp = preActivation(op.attrs.activation);
      const [x, w] = [s(op.inputs[0]), s(op.inputs[1])];
      const attrs = { ...op.attrs, activation: NO_ACTIVATION };
      if (need(0)) contribute(x.name, tape.record({ kind: 'conv_grad_input', inputs: [gp.name, w.name], attrs }, x.shape, origin(op, 'input')));
      if (need(1)) contribute(w.name, tape.record({ kind: 'conv_grad_weight', inputs: [x.name, gp.name], attrs }, w.shape, origin(op, 'weight')));
      if (op.inputs[2] !== undefined && need(2)) contribute(op.inputs[2], tape.reshape(tape.reduce('sum', gp, [0, ...gp.shape.slice(2).map((_, i) => i + 2)]), [gp.shape[1]]));
      return;
    }
    case 'gemm': {
      const gp = preActivation(op.attrs.activation);
      const { transA, transB, alpha, beta } = op.attrs;
      const [a, b] = [s(op.inputs[0]), s(op.inputs[1])];
      if (need(0)) {
        contribute(a.name, transA
          ? tape.gemm(b, gp, null, { transA: transB, transB: true, alpha })
          : tape.gemm(gp, b, null, { transA: false, transB: !transB, alpha }));
      }
      if (need(1)) {
        contribute(b.name, transB
          ? tape.gemm(gp, a, null, { transA: true, transB: transA, alpha })
          : tape.gemm(a, gp, null, { transA: !transA, transB: false, alpha }));
      }
      if (op.inputs[2] !== undefined && need(2)) {
        const c = s(op.inputs[2]);
        const r = tape.reduceTo(gp, c.shape);
        contribute(c.name, beta === 1 ? r : tape.mul(r, tape.scalar(beta)));
      }
      return;
    }
    case 'matmul': {
      const gp = preActivation(op.activation);
      const [a, b] = [s(op.inputs[0]), s(op.inputs[1])];
      // 1-D operands are promoted to matrices, as the forward op does, and demoted after.
      const a2 = a.shape.length === 1 ? tape.reshape(a, [1, a.shape[0]]) : a;
      const b2 = b.shape.length === 1 ? tape.reshape(b, [b.shape[0], 1]) : b;
      const m = a2.shape[a2.shape.length - (op.transA ? 1 : 2)];
      const n = b2.shape[b2.shape.length - (op.transB ? 2 : 1)];
      const yShape = [...gp.shape.slice(0, gp.shape.length - (a.shape.length === 1 ? 0 : 1) - (b.shape.length === 1 ? 0 : 1)), m, n];
      const g2 = tape.reshape(gp, yShape.length < 2 ? [m, n] : yShape);
      if (need(0)) {
        // gA = gY·op(B)ᵀ, transposed back when A was used transposed.
        const ga = op.transA ? tape.matmul(b2, g2, { transA: op.transB, transB: true }) : tape.matmul(g2, b2, { transB: !op.transB });
        contribute(a.name, tape.reshape(tape.reduceTo(ga, a2.shape), a.shape));
      }
      if (need(1)) {
        const gb = op.transB ? tape.matmul(g2, a2, { transA: true, transB: op.transA }) : tape.matmul(a2, g2, { transA: !op.transA });
        contribute(b.name, tape.reshape(tape.reduceTo(gb, b2.shape), b.shape));
      }
      return;
    }
    case 'binary': {
      const gp = preActivation(op.activation);
      const [a, b] = [s(op.inputs[0]), s(op.inputs[1])];
      const neg = () => tape.scalar(-1);
      switch (op.op) {
        case 'add':
          if (need(0)) contribute(a.name, tape.reduceTo(gp, a.shape));
          if (need(1)) contribute(b.name, tape.reduceTo(gp, b.shape));
          return;
        case 'sub':
          if (need(0)) contribute(a.name, tape.reduceTo(gp, a.shape));
          if (need(1)) contribute(b.name, tape.reduceTo(tape.mul(gp, neg()), b.shape));
          return;
        case 'mul':
          if (need(0)) contribute(a.name, tape.reduceTo(tape.mul(gp, b), a.shape));
          if (need(1)) contribute(b.name, tape.reduceTo(tape.mul(gp, a), b.shape));
          return;
        case 'div':
          if (need(0)) contribute(a.name, tape.reduceTo(tape.div(gp, b), a.shape));
          if (need(1)) contribute(b.name, tape.reduceTo(tape.mul(tape.div(tape.mul(gp, a), tape.mul(b, b)), neg()), b.shape));
          return;
      }
      return;
    }
    case 'affine': {
      const gp = preActivation(op.activation);
      const [x, scale] = [s(op.inputs[0]), s(op.inputs[1])];
      const perChannel = (t: Sym) => tape.reshape(t, [t.shape[0], ...x.shape.slice(2).map(() => 1)]);
      const channelAxes = [0, ...x.shape.slice(2).map((_, i) => i + 2)];
      if (need(0)) contribute(x.name, tape.mul(gp, perChannel(scale)));
      if (need(1)) contribute(scale.name, tape.reshape(tape.reduce('sum', tape.mul(gp, x), channelAxes), scale.shape));
      if (need(2)) contribute(op.inputs[2], tape.reshape(tape.reduce('sum', gp, channelAxes), s(op.inputs[2]).shape));
      return;
    }
    case 'pool':
      contribute(op.inputs[0], tape.record({ kind: 'pool_grad', pool: op.pool, inputs: [op.inputs[0], gy.name], attrs: op.attrs }, s(op.inputs[0]).shape, origin(op, '')));
      return;
    case 'global_pool':
      contribute(op.inputs[0], tape.record({ kind: 'global_pool_grad', pool: op.pool, inputs: [op.inputs[0], gy.name] }, s(op.inputs[0]).shape, origin(op, '')));
      return;
    case 'softmax':
      contribute(op.inputs[0], tape.record({ kind: 'softmax_grad', inputs: [y.name, gy.name], axis: op.axis, coerce2d: op.coerce2d, log: op.log }, y.shape, origin(op, '')));
      return;
    case 'concat': {
      let start = 0;
      op.inputs.forEach((name, k) => {
        const x = s(name);
        const axis = op.axis < 0 ? op.axis + x.shape.length : op.axis;
        if (need(k)) contribute(name, tape.record({ kind: 'slice', inputs: [gy.name], axis, start }, x.shape, origin(op, String(k))));
        start += x.shape[axis];
      });
      return;
    }
    case 'pad':
      contribute(op.inputs[0], tape.record({ kind: 'pad_grad', inputs: [gy.name], pads: op.pads, mode: op.mode }, s(op.inputs[0]).shape, origin(op, '')));
      return;
    case 'reduce':
      contribute(op.inputs[0], tape.record({ kind: 'reduce_grad', reduce: op.reduce, inputs: [op.inputs[0], y.name, gy.name], axes: op.axes }, s(op.inputs[0]).shape, origin(op, '')));
      return;
    case 'broadcast':
      contribute(op.inputs[0], tape.reduceTo(gy, s(op.inputs[0]).shape));
      return;
    case 'resize':
      contribute(op.inputs[0], tape.record({ kind: 'resize_grad', inputs: [gy.name], options: op.options }, s(op.inputs[0]).shape, origin(op, '')));
      return;
    case 'onehot_argmax':
      // Piecewise constant: zero almost everywhere.
      return;
    case 'batchnorm':
      batchNormBackward(tape, op, preActivation(op.activation), need, contribute);
      return;
    case 'batchnorm_stats': {
      // Reached only for statistics read by something other than a batchnorm of the same
      // tensor (that one's rule already accounts for them): mean' = g_m/M, var' = 2·g_v·(x − mean)/M.
      const x = s(op.inputs[0]);
      const C = x.shape[1];
      const M = x.shape.reduce((p, d) => p * d, 1) / Math.max(C, 1);
      const perChannel = [1, C, ...x.shape.slice(2).map(() => 1)];
      const row = (t: Sym, r: number) => tape.reshape(tape.record({ kind: 'slice', inputs: [t.name], axis: 0, start: r }, [1, C], origin(op, `row${r}`)), perChannel);
      const centered = tape.sub(x, row(y, 0));
      const fromVar = tape.mul(centered, tape.mul(row(gy, 1), tape.scalar(2 / M)));
      contribute(x.name, tape.add(fromVar, tape.mul(row(gy, 0), tape.scalar(1 / M))));
      return;
    }
    default:
      throw new InputError(`no gradient for ${op.kind} ('${op.node.name}'): second-order gradients are not supported`);
  }
}

/**
 * Batch normalization's rule. When the statistics are the batch's own (batchnorm_stats of
 * the same x: training mode), the input gradient includes the path through them, fused:
 * gamma·invstd·(g − (Σg + x̂·Σg·x̂)/M); the statistics then receive nothing (their own rule
 * serves other readers). With statistics fed in (running statistics: evaluation mode) the
 * input gradient is gamma·invstd·g. gamma and beta get the per-channel sums Σ g·x̂ and Σ g.
 */
function batchNormBackward(tape: Tape, op: Extract<GraphOp, { kind: 'batchnorm' }>, gp: Sym, need: (k: number) => boolean, contribute: (name: string, g: Sym) => void): void {
  const [x, stats, gamma, beta] = op.inputs.map((n) => tape.sym(n));
  const C = x.shape[1];
  const producer = tape.graph.ops.find((o) => o.output === stats.name);
  const batchStats = producer?.kind === 'batchnorm_stats' && producer.inputs[0] === x.name;
  if (need(1) && !batchStats) {
    throw new InputError(`no gradient for the statistics of batchnorm '${op.node.name}': they are neither constant nor the batch statistics of its input`);
  }
  let sums: Sym | null = null;
  if (need(2) || need(3) || (need(0) && batchStats)) {
    sums = tape.record({ kind: 'batchnorm_grad_params', inputs: [x.name, stats.name, gp.name], eps: op.eps }, [2, C], origin(op, 'params'));
  }
  const row = (r: number, like: Sym) => tape.reshape(tape.record({ kind: 'slice', inputs: [sums!.name], axis: 0, start: r }, [1, C], origin(op, r === 0 ? 'scale' : 'bias')), like.shape);
  if (need(2)) contribute(gamma.name, row(0, gamma));
  if (need(3)) contribute(beta.name, row(1, beta));
  if (need(0)) {
    const inputs: [string, string, string, string] | [string, string, string, string, string] = batchStats
      ? [x.name, stats.name, gamma.name, gp.name, sums!.name]
      : [x.name, stats.name, gamma.name, gp.name];
    contribute(x.name, tape.record({ kind: 'batchnorm_grad_input', inputs, eps: op.eps, batchStats }, x.shape, origin(op, 'input')));
  }
}
