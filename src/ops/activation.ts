/**
 * Point-wise activations that can be fused into the epilogue of a producing kernel
 * (conv, matmul, broadcast arithmetic) or run on their own. Their scalar arguments are
 * uniforms (act_a, act_b), so only the kind is part of a kernel's compile-time key.
 */
export type Activation =
  | { kind: 'none' }
  | { kind: 'relu' }
  | { kind: 'clip'; min: number; max: number }
  | { kind: 'leaky_relu'; alpha: number }
  | { kind: 'sigmoid' };

export const NO_ACTIVATION: Activation = { kind: 'none' };

/** The two uniform fields every activation-aware kernel declares. */
export const ACTIVATION_PARAMS = [
  ['act_a', 'f32'],
  ['act_b', 'f32'],
] as const;

export function activationParams(act: Activation): { act_a: number; act_b: number } {
  switch (act.kind) {
    case 'clip':
      return { act_a: Math.max(act.min, -3.4e38), act_b: Math.min(act.max, 3.4e38) };
    case 'leaky_relu':
      return { act_a: act.alpha, act_b: 0 };
    default:
      return { act_a: 0, act_b: 0 };
  }
}

/** WGSL function `activate(x: f32) -> f32` for the kind (reads params.act_a / act_b). */
export function activationWgsl(act: Activation['kind']): string {
  switch (act) {
    case 'none':
      return 'fn activate(x: f32) -> f32 { return x; }\n';
    case 'relu':
      return 'fn activate(x: f32) -> f32 { return max(x, 0.0); }\n';
    case 'clip':
      return 'fn activate(x: f32) -> f32 { return clamp(x, params.act_a, params.act_b); }\n';
    case 'leaky_relu':
      return 'fn activate(x: f32) -> f32 { return select(x * params.act_a, x, x >= 0.0); }\n';
    case 'sigmoid':
      // Split by sign so exp never overflows.
      return 'fn activate(x: f32) -> f32 { if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); } let e = exp(x); return e / (1.0 + e); }\n';
  }
}

/** Float64 reference of the activation, for CPU references and constant folding. */
export function activateCpu(act: Activation, x: number): number {
  switch (act.kind) {
    case 'none':
      return x;
    case 'relu':
      return Math.max(x, 0);
    case 'clip':
      return Math.min(Math.max(x, act.min), act.max);
    case 'leaky_relu':
      return x >= 0 ? x : x * act.alpha;
    case 'sigmoid':
      return 1 / (1 + Math.exp(-x));
  }
}
