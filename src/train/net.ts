import { type Activation, NO_ACTIVATION } from '../ops/activation.js';
import { BN_EPS } from '../ops/batchnorm.js';
import type { Conv2dAttrs } from '../ops/conv-attrs.js';
import { acceptsActivation, type OpOrigin, withActivation } from '../ops/graph.js';
import type { Pool2dAttrs } from '../ops/pool.js';
import type { Sym, Tape } from '../ops/tape.js';
import { InputError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { sizeOf } from '../runtime/shape.js';
import type { Rng } from './rng.js';

/**
 * How a network is recorded on a tape:
 * - 'train': parameters are graph inputs (bound to a ParameterStore's buffers), batch
 *   normalization uses the batch's statistics, activations are fused into their producers;
 * - 'eval': the same, with batch normalization on the running statistics;
 * - 'export': parameters are constants (host values), batch normalization is the affine map
 *   of its running statistics (folded into the convolution before export), every module is
 *   its own op named as torch.onnx names it, so layers can be tapped by module path.
 */
export type NetMode = 'train' | 'eval' | 'export';

export type Init =
  /** N(0, 2/fanIn): He initialization for layers followed by a ReLU. */
  | { kind: 'he_normal'; fanIn: number }
  /** U(−bound, bound): PyTorch's default for a Linear layer, bound = 1/√fanIn. */
  | { kind: 'uniform'; bound: number }
  | { kind: 'constant'; value: number }
  /** Row r of a [rows, …] tensor filled with values[r] (running statistics: mean 0, variance 1). */
  | { kind: 'rows'; values: number[] };

export interface ParamDecl {
  name: string;
  shape: number[];
  init: Init;
  trainable: boolean;
  decay: boolean;
}

/** A batch normalization in training mode: whose statistics update which running buffer after a step. */
export interface BatchNormSite {
  path: string;
  stats: Sym;
  running: string;
  channels: number;
  /** Elements per channel in one batch (N·H·W): the running variance's unbiasing factor. */
  perChannel: number;
}

/** Initial values of a declared parameter, drawn from `rng` in a fixed order. */
export function initialValues(d: ParamDecl, rng: Rng): Float32Array {
  const n = sizeOf(d.shape);
  const out = new Float32Array(n);
  const init = d.init;
  switch (init.kind) {
    case 'he_normal': {
      const std = Math.sqrt(2 / init.fanIn);
      for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
      break;
    }
    case 'uniform':
      for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * init.bound;
      break;
    case 'constant':
      out.fill(init.value);
      break;
    case 'rows': {
      const per = n / init.values.length;
      init.values.forEach((v, r) => out.fill(v, r * per, (r + 1) * per));
      break;
    }
  }
  return out;
}

/** Scope segments of a torch module path as torch.onnx writes them: `layer1.0.conv1` → layer1 / layer1.0 / conv1. */
export function torchScope(path: string): string {
  const parts = path.split('.');
  const segs: string[] = [];
  parts.forEach((p, i) => {
    if (i > 0 && /^\d+$/.test(p)) segs.push(`${segs[segs.length - 1]}.${p}`);
    else segs.push(p);
  });
  return segs.join('/');
}

export interface ConvOptions {
  out: number;
  kernel?: number;
  stride?: number;
  pad?: number;
  bias?: boolean;
}

/**
 * Records CNN modules on a tape under torch-style names (node `/features/features.0/Conv`,
 * tensor `<node>_output_0`, parameter `features.0.weight`), declaring parameters on first
 * use. Architectures are functions of a Net, so one definition yields the training
 * program, the evaluation program and the exported graph.
 */
export class Net {
  readonly tape: Tape;
  readonly mode: NetMode;
  readonly params = new Map<string, ParamDecl>();
  readonly batchNorms: BatchNormSite[] = [];
  private readonly values: ReadonlyMap<string, Float32Array> | null;
  private readonly syms = new Map<string, Sym>();

  constructor(tape: Tape, mode: NetMode, values?: ReadonlyMap<string, Float32Array>) {
    if (mode === 'export' && !values) throw new InputError("a Net in 'export' mode needs the parameters' values");
    this.tape = tape;
    this.mode = mode;
    this.values = values ?? null;
  }

  private origin(path: string, opType: string): OpOrigin {
    return { name: path ? `/${torchScope(path)}/${opType}` : `/${opType}`, opType };
  }

  private record(op: Parameters<Tape['record']>[0], shape: readonly number[] | null, origin: OpOrigin, name?: string): Sym {
    return this.tape.record(op, shape, origin, name ?? `${origin.name}_output_0`);
  }

  param(name: string, shape: number[], init: Init, options: { trainable?: boolean; decay?: boolean } = {}): Sym {
    const known = this.syms.get(name);
    if (known) return known;
    this.params.set(name, { name, shape, init, trainable: options.trainable ?? true, decay: options.decay ?? false });
    let s: Sym;
    if (this.mode === 'export') {
      const v = this.values!.get(name);
      if (!v || v.length !== sizeOf(shape)) throw new InputError(`no values of shape [${shape}] for parameter '${name}'`);
      s = this.tape.constant(hostTensor('float32', shape, v), name);
    } else {
      s = this.tape.input(name, shape);
    }
    this.syms.set(name, s);
    return s;
  }

  conv(x: Sym, path: string, o: ConvOptions): Sym {
    const k = o.kernel ?? 3;
    const s = o.stride ?? 1;
    const p = o.pad ?? (k - 1) >> 1;
    const cin = x.shape[1];
    const w = this.param(`${path}.weight`, [o.out, cin, k, k], { kind: 'he_normal', fanIn: cin * k * k }, { decay: true });
    const b = o.bias === false ? null : this.param(`${path}.bias`, [o.out], { kind: 'constant', value: 0 });
    const attrs: Conv2dAttrs = { kernel: [k, k], strides: [s, s], pads: [p, p, p, p], dilations: [1, 1], groups: 1, activation: NO_ACTIVATION };
    const inputs: [string, string] | [string, string, string] = b ? [x.name, w.name, b.name] : [x.name, w.name];
    return this.record({ kind: 'conv', inputs, attrs }, null, this.origin(path, 'Conv'));
  }

  batchNorm(x: Sym, path: string): Sym {
    const C = x.shape[1];
    const gamma = this.param(`${path}.weight`, [C], { kind: 'constant', value: 1 });
    const beta = this.param(`${path}.bias`, [C], { kind: 'constant', value: 0 });
    const runningName = `${path}.running_stats`;
    const origin = this.origin(path, 'BatchNormalization');
    if (this.mode === 'export') {
      const r = this.values!.get(runningName);
      const g = this.values!.get(gamma.name);
      const b = this.values!.get(beta.name);
      if (!r || !g || !b) throw new InputError(`no values for batch normalization '${path}'`);
      this.params.set(runningName, { name: runningName, shape: [2, C], init: { kind: 'rows', values: [0, 1] }, trainable: false, decay: false });
      // Inference form: x·scale + shift, which export folds into the preceding convolution.
      const scale = Float32Array.from({ length: C }, (_, c) => g[c] / Math.sqrt(r[C + c] + BN_EPS));
      const shift = Float32Array.from({ length: C }, (_, c) => b[c] - r[c] * scale[c]);
      const sc = this.tape.constant(hostTensor('float32', [C], scale), `${path}::scale`);
      const sh = this.tape.constant(hostTensor('float32', [C], shift), `${path}::shift`);
      return this.record({ kind: 'affine', inputs: [x.name, sc.name, sh.name], activation: NO_ACTIVATION }, null, origin);
    }
    // Running statistics [2, C]: mean row (starts at 0), variance row (starts at 1).
    const running = this.param(runningName, [2, C], { kind: 'rows', values: [0, 1] }, { trainable: false });
    let stats = running;
    if (this.mode === 'train') {
      stats = this.record({ kind: 'batchnorm_stats', inputs: [x.name] }, null, this.origin(path, 'BatchNormStats'));
      this.batchNorms.push({ path, stats, running: runningName, channels: C, perChannel: sizeOf(x.shape) / C });
    }
    return this.record({ kind: 'batchnorm', inputs: [x.name, stats.name, gamma.name, beta.name], eps: BN_EPS, activation: NO_ACTIVATION }, null, origin);
  }

  /** ReLU: fused into the op that produced x when not exporting (x must have no other reader yet). */
  relu(x: Sym, path: string): Sym {
    return this.activation(x, path, { kind: 'relu' }, 'Relu');
  }

  private activation(x: Sym, path: string, act: Activation, opType: string): Sym {
    const ops = this.tape.graph.ops;
    const last = ops[ops.length - 1];
    if (this.mode !== 'export' && last && last.output === x.name && acceptsActivation(last)) {
      ops[ops.length - 1] = withActivation(last, act, x.name);
      return x;
    }
    return this.record({ kind: 'unary', inputs: [x.name], activation: act }, null, this.origin(path, opType));
  }

  maxPool(x: Sym, path: string, kernel = 2, stride = kernel): Sym {
    const attrs: Pool2dAttrs = { kernel: [kernel, kernel], strides: [stride, stride], pads: [0, 0, 0, 0], dilations: [1, 1], ceilMode: false, countIncludePad: false };
    return this.record({ kind: 'pool', pool: 'max', inputs: [x.name], attrs }, null, this.origin(path, 'MaxPool'));
  }

  globalAvgPool(x: Sym, path: string): Sym {
    return this.record({ kind: 'global_pool', pool: 'avg', inputs: [x.name] }, null, this.origin(path, 'GlobalAveragePool'));
  }

  /** [N, …] → [N, rest], as torch.flatten(x, 1) (a top-level `/Flatten` node). */
  flatten(x: Sym): Sym {
    return this.record({ kind: 'alias', inputs: [x.name] }, [x.shape[0], sizeOf(x.shape.slice(1))], this.origin('', 'Flatten'));
  }

  add(a: Sym, b: Sym, scopePath: string): Sym {
    return this.record({ kind: 'binary', op: 'add', inputs: [a.name, b.name], activation: NO_ACTIVATION }, null, this.origin(scopePath, 'Add'));
  }

  /**
   * y = x·Wᵀ + b with W [out, in] (torch.nn.Linear's layout). `hidden`: followed by a ReLU
   * (He initialization), else PyTorch's default uniform. `output`: the result's tensor name.
   */
  linear(x: Sym, path: string, out: number, o: { hidden?: boolean; output?: string } = {}): Sym {
    const fanIn = x.shape[1];
    const bound = 1 / Math.sqrt(fanIn);
    const w = this.param(`${path}.weight`, [out, fanIn], o.hidden ? { kind: 'he_normal', fanIn } : { kind: 'uniform', bound }, { decay: true });
    const b = this.param(`${path}.bias`, [out], o.hidden ? { kind: 'constant', value: 0 } : { kind: 'uniform', bound });
    const attrs = { transA: false, transB: true, alpha: 1, beta: 1, activation: NO_ACTIVATION };
    return this.record({ kind: 'gemm', inputs: [x.name, w.name, b.name], attrs }, null, this.origin(path, 'Gemm'), o.output);
  }
}
