/**
 * The point-wise ops, one row each: what a kernel computes (WGSL), what the float64 reference
 * computes, the uniforms the row's scalar arguments travel in, its derivative, its ONNX op
 * type, and whether it may ride in a producing kernel's epilogue. Everything that used to be
 * a per-kind switch (activation WGSL, CPU reference, uniform packing, gradient kernel,
 * fusion) is read from here, so a new row is one entry and a forgotten field fails tsc.
 *
 * Scalar arguments are uniforms (act_a, act_b), so only the kind is part of a kernel's
 * compile-time key: one pipeline serves every clip range or exponent.
 */

/** An activation: a point-wise function of one tensor, with its scalar arguments. */
export type Activation =
  | { kind: 'none' }
  | { kind: 'relu' }
  | { kind: 'clip'; min: number; max: number }
  | { kind: 'leaky_relu'; alpha: number }
  | { kind: 'sigmoid' }
  | { kind: 'exp' }
  | { kind: 'abs' }
  | { kind: 'square' }
  | { kind: 'sqrt' }
  | { kind: 'tanh' }
  /** x^p with a constant exponent p (see POW_EXACT_WGSL for negative bases). */
  | { kind: 'pow'; p: number };

export type ActivationKind = Activation['kind'];

/** The Activation variant of one kind. */
export type ActivationOf<K extends ActivationKind> = Extract<Activation, { kind: K }>;

export const NO_ACTIVATION: Activation = { kind: 'none' };

/** The two uniform fields every activation-aware kernel declares. */
export const ACTIVATION_PARAMS = [
  ['act_a', 'f32'],
  ['act_b', 'f32'],
] as const;

export interface ActivationUniforms {
  act_a: number;
  act_b: number;
}

/** Float types a row's WGSL helpers are generated for: forward epilogues are scalar, gradients scalar or vec4. */
export type WgslReal = 'f32' | 'vec4<f32>';

export interface PointwiseDerivative<K extends ActivationKind> {
  /**
   * What the derivative is computed from: the op's input x, or its output y. A fused
   * activation leaves only y behind, so only rows 'y' can fuse.
   */
  from: 'x' | 'y';
  /**
   * WGSL expression of gx = g · f'(x) in v (x or y, as `from` says) and g, both of type
   * `Real` (the gradient kernel aliases it to f32 or vec4<f32>); may read params.act_a / act_b.
   */
  wgsl: string;
  /** f'(x) in float64, from v (x or y, as `from` says). */
  cpu: (v: number, act: ActivationOf<K>) => number;
  /** Why this activation's derivative cannot be computed from v with these arguments; undefined when it can. */
  unsupported?: (act: ActivationOf<K>) => string | undefined;
}

export interface PointwiseRow<K extends ActivationKind> {
  /**
   * Body of `fn activate(x: f32) -> f32` (statements ending in a return; may read
   * params.act_a / act_b). A body rather than an expression because some rows need
   * branches (sigmoid, tanh split by sign so nothing overflows) or a loop (pow).
   */
  wgsl: string;
  /** WGSL functions the row's forward body or derivative call, generated for a float type. */
  wgslHelpers?: (real: WgslReal) => string;
  /** The function in float64: the reference for tests and CPU evaluation. */
  cpu: (x: number, act: ActivationOf<K>) => number;
  /** The activation's arguments as the kernels' uniforms. */
  uniforms: (act: ActivationOf<K>) => ActivationUniforms;
  derivative: PointwiseDerivative<K>;
  /** The ONNX op type that computes it, or null where ONNX has none. */
  onnxOp: string | null;
  /**
   * May ride in a producing kernel's epilogue (conv, gemm, matmul, broadcast arithmetic,
   * batch norm). True only when the derivative is computed from y, since a fused activation
   * leaves only y behind; every epilogue calls the same `activate`, so any such row works there.
   */
  fuses: boolean;
}

const NO_UNIFORMS = (): ActivationUniforms => ({ act_a: 0, act_b: 0 });

/** Largest magnitude the f32 uniforms carry: infinite clip bounds become the f32 extremes. */
const F32_BOUND = 3.4e38;

/**
 * `pow_exact(x, p)`: x^p for a uniform exponent p. An integer p (|p| < 2^24) is computed
 * by repeated squaring, so a negative base keeps the sign of an odd power and square / cube
 * are the plain products (pow() of a negative base is NaN in WGSL practice: it is
 * exp2(p·log2(x))); 0^0 = 1 and 0^(negative integer) = ±inf as Math.pow has them. An
 * |p| ≥ 2^24 is an even integer (every f32 that large is), so |x|^p is exact in sign.
 * A fractional p goes to pow() (NaN for x < 0 on lavapipe, as Math.pow; WGSL leaves it
 * undefined), except at x = ±0, which pow() does not cover: 0 for p > 0, +inf for p < 0, as
 * Math.pow. The exponent travels as f32,
 * so a p that f32 cannot hold exactly is rounded first.
 */
function powExactWgsl(real: WgslReal): string {
  return `fn pow_exact(x: ${real}, p: f32) -> ${real} {
  if (p != floor(p)) {
    // pow(0, p) is outside WGSL's domain (llvmpipe returns 0 even for p < 0): ±0 is spelled out.
    let at_zero = select(${real}(0.0), ${real}(1.0) / abs(x), p < 0.0);
    return select(pow(x, ${real}(p)), at_zero, x == ${real}(0.0));
  }
  if (abs(p) >= 16777216.0) { return pow(abs(x), ${real}(p)); }
  var e = u32(abs(p));
  var base = x;
  var r = ${real}(1.0);
  loop {
    if ((e & 1u) != 0u) { r = r * base; }
    e = e >> 1u;
    if (e == 0u) { break; }
    base = base * base;
  }
  return select(r, ${real}(1.0) / r, p < 0.0);
}
`;
}

function powCpu(x: number, p: number): number {
  return Math.pow(x, p);
}

/**
 * Taylor series of tanh through x^15 below |x| = 0.5, where 1 − e^(−2|x|) would cancel
 * (truncation ≤ 1e-8 relative there); above, (1 − e)/(1 + e) with e = e^(−2|x|) ≤ 0.37, which
 * never overflows (e → 0 gives ±1 for large |x|, where tanh() built on e^(2x) gives inf/inf).
 */
const TANH_WGSL = `let a = abs(x);
  if (a < 0.5) {
    let s = x * x;
    return x * (1.0 + s * (-0.33333333333 + s * (0.13333333333 + s * (-0.05396825397 + s * (0.02186948854 + s * (-0.00886323552 + s * (0.00359212803 + s * -0.00145583438)))))));
  }
  let e = exp(-2.0 * a);
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, x >= 0.0);`;

export const POINTWISE: { [K in ActivationKind]: PointwiseRow<K> } = {
  none: {
    wgsl: 'return x;',
    cpu: (x) => x,
    uniforms: NO_UNIFORMS,
    derivative: { from: 'y', wgsl: 'g', cpu: () => 1 },
    onnxOp: 'Identity',
    fuses: true,
  },
  relu: {
    wgsl: 'return max(x, 0.0);',
    cpu: (x) => Math.max(x, 0),
    uniforms: NO_UNIFORMS,
    // relu'(0) = 0, as PyTorch has it.
    derivative: { from: 'y', wgsl: 'select(Real(0.0), g, v > Real(0.0))', cpu: (y) => (y > 0 ? 1 : 0) },
    onnxOp: 'Relu',
    fuses: true,
  },
  clip: {
    wgsl: 'return clamp(x, params.act_a, params.act_b);',
    cpu: (x, a) => Math.min(Math.max(x, a.min), a.max),
    uniforms: (a) => ({ act_a: Math.max(a.min, -F32_BOUND), act_b: Math.min(a.max, F32_BOUND) }),
    // Zero at the bounds themselves: y there cannot tell a clipped x from one that just reached it.
    derivative: {
      from: 'y',
      wgsl: 'select(Real(0.0), g, (v > Real(params.act_a)) & (v < Real(params.act_b)))',
      cpu: (y, a) => (y > a.min && y < a.max ? 1 : 0),
    },
    onnxOp: 'Clip',
    fuses: true,
  },
  leaky_relu: {
    wgsl: 'return select(x * params.act_a, x, x >= 0.0);',
    cpu: (x, a) => (x >= 0 ? x : x * a.alpha),
    uniforms: (a) => ({ act_a: a.alpha, act_b: 0 }),
    derivative: {
      from: 'y',
      wgsl: 'select(g * params.act_a, g, v >= Real(0.0))',
      cpu: (y, a) => (y >= 0 ? 1 : a.alpha),
      unsupported: (a) => (a.alpha > 0 ? undefined : `the leaky_relu gradient from the activation's output needs alpha > 0, got alpha = ${a.alpha}`),
    },
    onnxOp: 'LeakyRelu',
    fuses: true,
  },
  sigmoid: {
    // Split by sign so exp never overflows.
    wgsl: 'if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); } let e = exp(x); return e / (1.0 + e);',
    cpu: (x) => 1 / (1 + Math.exp(-x)),
    uniforms: NO_UNIFORMS,
    derivative: { from: 'y', wgsl: 'g * v * (1.0 - v)', cpu: (y) => y * (1 - y) },
    onnxOp: 'Sigmoid',
    fuses: true,
  },
  exp: {
    // Overflows to +inf above x ≈ 88.72, where the float64 value rounded to f32 is +inf too.
    wgsl: 'return exp(x);',
    cpu: (x) => Math.exp(x),
    uniforms: NO_UNIFORMS,
    derivative: { from: 'y', wgsl: 'g * v', cpu: (y) => y },
    onnxOp: 'Exp',
    fuses: true,
  },
  abs: {
    wgsl: 'return abs(x);',
    cpu: (x) => Math.abs(x),
    uniforms: NO_UNIFORMS,
    // abs'(0) = 0 (sign(0)), as PyTorch has it; y = |x| has lost the sign, hence from x.
    derivative: { from: 'x', wgsl: 'g * sign(v)', cpu: (x) => Math.sign(x) },
    onnxOp: 'Abs',
    fuses: false,
  },
  square: {
    wgsl: 'return x * x;',
    cpu: (x) => x * x,
    uniforms: NO_UNIFORMS,
    derivative: { from: 'x', wgsl: 'g * (2.0 * v)', cpu: (x) => 2 * x },
    // ONNX spells it Mul(x, x) or Pow(x, 2), not as one unary op.
    onnxOp: null,
    fuses: false,
  },
  sqrt: {
    // NaN for x < 0, like Math.sqrt.
    wgsl: 'return sqrt(x);',
    cpu: (x) => Math.sqrt(x),
    uniforms: NO_UNIFORMS,
    // sqrt'(0) = +inf: gx = g / (2·0) is ±inf, and NaN where g = 0 too (PyTorch's behaviour).
    derivative: { from: 'y', wgsl: 'g / (2.0 * v)', cpu: (y) => 0.5 / y },
    onnxOp: 'Sqrt',
    fuses: true,
  },
  tanh: {
    wgsl: TANH_WGSL,
    cpu: (x) => Math.tanh(x),
    uniforms: NO_UNIFORMS,
    // (1 − y)(1 + y), not 1 − y²: for y near ±1 the first factor is exact (Sterbenz), y·y is not.
    derivative: { from: 'y', wgsl: 'g * ((1.0 - v) * (1.0 + v))', cpu: (y) => (1 - y) * (1 + y) },
    onnxOp: 'Tanh',
    fuses: true,
  },
  pow: {
    wgsl: 'return pow_exact(x, params.act_a);',
    wgslHelpers: powExactWgsl,
    cpu: (x, a) => powCpu(x, a.p),
    uniforms: (a) => ({ act_a: a.p, act_b: 0 }),
    // p·x^(p−1), with p = 0 giving 0 everywhere (not 0·x^(−1), which is NaN at x = 0).
    derivative: {
      from: 'x',
      wgsl: 'select(g * (params.act_a * pow_exact(v, params.act_a - 1.0)), Real(0.0), params.act_a == 0.0)',
      cpu: (x, a) => (a.p === 0 ? 0 : a.p * powCpu(x, a.p - 1)),
    },
    onnxOp: 'Pow',
    fuses: false,
  },
};

/** Every kind, in the table's order (for tests and tools that iterate the rows). */
export const ACTIVATION_KINDS = Object.keys(POINTWISE) as ActivationKind[];

/** The row of an activation, its functions typed for that very variant. */
function rowOf<K extends ActivationKind>(act: ActivationOf<K>): PointwiseRow<K> {
  // The mapped type pairs each kind with its row; TypeScript cannot follow act.kind back to K.
  return POINTWISE[act.kind as K];
}

export function activationParams(act: Activation): ActivationUniforms {
  return rowOf(act).uniforms(act);
}

/** WGSL function `activate(x: f32) -> f32` for the kind (reads params.act_a / act_b), after any helpers it calls. */
export function activationWgsl(kind: ActivationKind): string {
  const row = POINTWISE[kind];
  return `${row.wgslHelpers?.('f32') ?? ''}fn activate(x: f32) -> f32 { ${row.wgsl} }\n`;
}

/** Float64 reference of the activation, for CPU references and constant folding. */
export function activateCpu(act: Activation, x: number): number {
  return rowOf(act).cpu(x, act);
}

/** f'(x) in float64 from v, which is x or y as activationGradientReads says. */
export function activationDerivativeCpu(act: Activation, v: number): number {
  return rowOf(act).derivative.cpu(v, act);
}

/** Which tensor the activation's gradient reads: its input x or its output y. */
export function activationGradientReads(act: Activation): 'x' | 'y' {
  return POINTWISE[act.kind].derivative.from;
}

/** Why the gradient of this activation cannot be computed (with its arguments), or undefined. */
export function activationGradientUnsupported(act: Activation): string | undefined {
  return rowOf(act).derivative.unsupported?.(act);
}

/** May the activation ride in the epilogue of the kernel that produces its input. */
export function activationFuses(act: Activation): boolean {
  return POINTWISE[act.kind].fuses;
}
