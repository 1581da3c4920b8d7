import type { Sym } from '../ops/graph.js';
import { NO_ACTIVATION } from '../ops/activation.js';
import type { Tape } from '../ops/tape.js';
import { InputError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';

/**
 * The substrates that insertion/deletion put in place of an image's pixels (SPEC §2): a
 * Gaussian blur of the image, zeros, or a constant, made on the GPU as tape ops.
 */
export type Substrate =
  | { kind: 'blur'; kernel: number; sigma: number; style: BlurStyle }
  | { kind: 'constant'; value: number };

/**
 * 'torchvision': torchvision's `gaussian_blur` (exp(−x²/2σ²) normalized over the kernel, reflect
 * padding), SPEC's default. 'rise': eclique/RISE's `gkern` (scipy's gaussian_filter of a
 * Dirac, truncated at 4σ, reflected into the kernel window) applied as a convolution with zero
 * padding, as RISE's evaluation notebook does.
 */
export type BlurStyle = 'torchvision' | 'rise';

/** One axis of the blur kernel, float64; the 2-D kernel is its outer product in both styles. */
export function blurKernel1d(size: number, sigma: number, style: BlurStyle): Float64Array {
  if (!(Number.isInteger(size) && size >= 1 && size % 2 === 1)) throw new InputError(`blur kernel size must be an odd whole number ≥ 1, got ${size}`);
  if (!(sigma > 0 && Number.isFinite(sigma))) throw new InputError(`blur sigma must be a positive number, got ${sigma}`);
  const half = (size - 1) / 2;
  const k = new Float64Array(size);
  if (style === 'torchvision') {
    for (let i = 0; i < size; i++) k[i] = Math.exp(-0.5 * ((i - half) / sigma) ** 2);
  } else {
    // scipy.ndimage.gaussian_filter1d of a Dirac at the window's center: weights out to
    // radius int(4σ + 0.5), and every tap that falls outside the window reflects back into it
    // (scipy's 'reflect': the edge sample repeated, d c b a | a b c d).
    const radius = Math.floor(4 * sigma + 0.5);
    const w = Array.from({ length: 2 * radius + 1 }, (_, j) => Math.exp(-0.5 * ((j - radius) / sigma) ** 2));
    const total = w.reduce((a, b) => a + b, 0);
    const reflect = (p: number) => {
      const period = 2 * size;
      let q = ((p % period) + period) % period;
      if (q >= size) q = period - 1 - q;
      return q;
    };
    // out[i] = Σ_j w[j]·dirac[reflect(i + j − radius)]
    for (let i = 0; i < size; i++) for (let j = 0; j < w.length; j++) if (reflect(i + j - radius) === half) k[i] += w[j] / total;
    return k;
  }
  const sum = k.reduce((a, b) => a + b, 0);
  return k.map((v) => v / sum);
}

/** Float64 reference of `blur` for one [C, H, W] image (tests). */
export function blurRef(x: ArrayLike<number>, shape: readonly [number, number, number], size: number, sigma: number, style: BlurStyle): Float64Array {
  const [C, H, W] = shape;
  const k = blurKernel1d(size, sigma, style);
  const half = (size - 1) / 2;
  const at = (c: number, y: number, xx: number): number => {
    if (style === 'rise') return y < 0 || y >= H || xx < 0 || xx >= W ? 0 : x[(c * H + y) * W + xx];
    const ry = y < 0 ? -y : y >= H ? 2 * H - 2 - y : y;
    const rx = xx < 0 ? -xx : xx >= W ? 2 * W - 2 - xx : xx;
    return x[(c * H + ry) * W + rx];
  };
  const out = new Float64Array(C * H * W);
  for (let c = 0; c < C; c++) for (let y = 0; y < H; y++) for (let xx = 0; xx < W; xx++) {
    let s = 0;
    for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) s += k[i] * k[j] * at(c, y + i - half, xx + j - half);
    out[(c * H + y) * W + xx] = s;
  }
  return out;
}

/**
 * The blurred images of x [N, C, H, W]: padding (reflect or zeros), then one depthwise
 * convolution per channel with the 2-D kernel. Reflect padding needs the image's side to exceed
 * half the kernel (torchvision has the same limit).
 */
export function blur(t: Tape, x: Sym, size: number, sigma: number, style: BlurStyle): Sym {
  const [N, C, H, W] = x.shape;
  const half = (size - 1) / 2;
  if (style === 'torchvision' && (H <= half || W <= half)) throw new InputError(`blur: reflect padding of ${half} needs an image larger than ${half}×${half}, got ${H}×${W}`);
  const k = blurKernel1d(size, sigma, style);
  const weights = new Float32Array(C * size * size);
  for (let c = 0; c < C; c++) for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) weights[(c * size + i) * size + j] = k[i] * k[j];
  const w = t.constant(hostTensor('float32', [C, 1, size, size], weights));
  let input = x;
  let pads: [number, number, number, number] = [half, half, half, half];
  if (style === 'torchvision') {
    input = t.record({ kind: 'pad', inputs: [x.name], pads: [0, 0, half, half, 0, 0, half, half], mode: 'reflect', value: 0 }, [N, C, H + 2 * half, W + 2 * half], { name: 'blur_pad', opType: 'Pad' });
    pads = [0, 0, 0, 0];
  }
  return t.record({
    kind: 'conv',
    inputs: [input.name, w.name],
    attrs: { kernel: [size, size], strides: [1, 1], pads, dilations: [1, 1], groups: C, activation: NO_ACTIVATION },
  }, [N, C, H, W], { name: 'blur', opType: 'Conv' });
}

/** The substrate images for x [N, C, H, W]. */
export function substrateOf(t: Tape, x: Sym, s: Substrate): Sym {
  if (s.kind === 'blur') return blur(t, x, s.kernel, s.sigma, s.style);
  return t.broadcast(t.scalar(s.value), x.shape);
}
