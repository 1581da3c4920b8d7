import type { Model } from '../model.js';
import type { Sym } from '../ops/graph.js';
import { Tape } from '../ops/tape.js';
import { InputError, ShapeError } from '../runtime/errors.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { formatShape } from '../runtime/shape.js';
import { readTensors, Tensor } from '../runtime/tensor.js';
import { Rng } from '../train/rng.js';

/**
 * Pixab-CAM's sanity data (seed 002 §2, §5.2.3; SPEC §2 "DAP1 / DAP2"): adversarial patches
 * made by a targeted iterative FGSM attack on a zero image, so that where the network looks
 * is known — the patch is the ground-truth box of the pointing game and of OL.
 *
 * What the paper leaves open, and what was decided here:
 * - Pixel space. The zero image and the patch values live in [0, 1] pixels, carried to the
 *   model's input by x = (p − mean)/std per channel (`pixels`; default mean 0, std 1, i.e. the
 *   model reads pixels). Patch pixels are clipped to [0, 1] ∩ [−ε, ε] around the zero image.
 * - The attack. The paper names FGSM (Goodfellow et al.) and no settings; we run the
 *   iterative, targeted form (Kurakin et al.'s basic iterative method): p ← clip(p + α ·
 *   sign(∇_p log softmax_c(p)) ⊙ mask) for a fixed number of iterations, mask = the patch
 *   pixels, from p = 0. Ascending log softmax_c is descending the target's cross-entropy.
 *   The iteration count is fixed (no early stop), so nothing is read back in between.
 *   Defaults: ε = 1 (the patch may take any valid pixel value), α = 0.05 and 20 iterations
 *   (α·T = ε, as Kurakin et al. size their iterations to reach the bound). Measured on the
 *   Fashion models (16 images per setting, not part of the tests): 20 × 0.05 came within
 *   0.05 of 40 × 0.025 and 80 × 0.01 in success at a half or a quarter of the passes, and beat
 *   6 × 0.2 and 12 × 0.1; a logit objective did no better than log softmax.
 * - DAP1 (AE1, §2.1): all patches of an image are attacked together towards the image's one
 *   target class on the zero image; with `backgrounds` (natural images, model inputs) the
 *   attacked patches then replace those pixels of a background, as the paper adds the
 *   patch image to the image whose patch area is zeroed; without, the image is the attacked
 *   zero image itself (the paper's step (b)). The ground truth is every patch.
 * - DAP2 (AE2, §2.2): only patches, no natural image; each patch is attacked alone, on its
 *   own zero image, towards its own class (distinct classes within an image), then the
 *   patches are combined. §2.2 shows four patches, §5.2.3 draws 1–9 for both tasks: the
 *   count follows §5.2.3 (`patches`). The class to explain is the first patch's; its box is
 *   the ground truth and the other patches are the distractors (every patch is returned).
 * - Patches do not overlap (the paper's figures show disjoint patches). Width and height are
 *   drawn independently, each a whole number of pixels uniform between round(lo·side) and
 *   round(hi·side) of `sideFraction` [lo, hi]; positions are uniform among those that overlap
 *   no earlier patch (rejection sampling; a seeded grid placement when that keeps failing).
 *   A request that a grid of the largest patches cannot hold is refused.
 * - Success: a patch attack succeeds when its patch-only image is classified as its target
 *   at the end; an image succeeds when all of its attacks do. The composite's own prediction
 *   is reported too (a DAP2 image holds several classes; a DAP1 background competes).
 *   On the 56² Fashion models a lone patch of 8–11 px reaches its class in only a third to a
 *   half of the attacks (the garments fill the image); at 40–45 % of the side every attack
 *   succeeded (test/metrics-dap.test.ts).
 * - `backgrounds` is read whole by every composition pass, so it must fit one binding.
 */

export type DapVariant = 'dap1' | 'dap2';

/** [x0, y0, x1, y1) in model-input pixels, end exclusive. */
export type DapBox = readonly [number, number, number, number];

export interface DapOptions {
  /** Images to make. */
  count: number;
  variant: DapVariant;
  /** Seeds the patch counts, sizes, positions and (when not given) the target classes. */
  seed: number;
  /** One image's shape [C, H, W] (the model input's). */
  image: readonly [number, number, number];
  /** Fewest and most patches per image (default [1, 9]). */
  patches?: readonly [number, number];
  /** A patch side as a fraction of the image's side, lowest and highest (default [0.15, 0.20]). */
  sideFraction?: readonly [number, number];
  /** FGSM iterations (default 20). */
  iterations?: number;
  /** L∞ radius around the zero image, in pixels (default 1). */
  epsilon?: number;
  /** Step α per iteration, in pixels (default 0.05). */
  step?: number;
  /** The class of each image (DAP2: of its first patch; the other patches get distinct seeded classes). Default seeded. */
  targets?: readonly number[];
  /** The model input's normalization of [0, 1] pixels, per channel or one for all: x = (p − mean)/std. Default mean 0, std 1. */
  pixels?: { mean: readonly number[]; std: readonly number[] };
  /** DAP1 only: natural images (model inputs) [B, C, H, W] the patches are pasted on; image i uses background i mod B. */
  backgrounds?: Tensor;
  /** Most attack rows per pass (the device's binding limits may split further). */
  maxChunk?: number;
}

export interface DapPatch {
  box: DapBox;
  /** The class this patch was attacked towards. */
  target: number;
  /** Whether its patch-only image ended classified as `target`. */
  success: boolean;
}

export interface DapImages {
  /** The images as model inputs, [count, C, H, W]; the caller owns it. */
  x: Tensor;
  /** The class to explain, per image. */
  targets: number[];
  /** The ground-truth boxes of `targets[i]`, per image (DAP1: every patch; DAP2: the target's patch). */
  boxes: DapBox[][];
  /** Every patch of every image, with its class and its attack's outcome. */
  patches: DapPatch[][];
  /** Per image: every one of its attacks reached its class. */
  success: boolean[];
  /** The fraction of images that succeeded. */
  successRate: number;
  /** The class the model gives each final image (argmax of its logits). */
  predicted: number[];
}

const DEFAULTS = { patches: [1, 9] as const, sideFraction: [0.15, 0.2] as const, iterations: 20, epsilon: 1, step: 0.05 };
const PLACEMENT_TRIES = 200;
const PLACEMENT_RESTARTS = 20;

interface Plan {
  patches: { box: DapBox; target: number }[][];
  /** Attack rows: which image, which patches (one row per image for DAP1, per patch for DAP2). */
  rows: { image: number; patches: number[]; target: number }[];
}

function positiveInt(v: number, what: string, min = 1): void {
  if (!(Number.isInteger(v) && v >= min)) throw new InputError(`DAP: ${what} must be a whole number ≥ ${min}, got ${v}`);
}

/** Side lengths in pixels for fractions [lo, hi] of a side of `n` pixels. */
function sideRange(n: number, [lo, hi]: readonly [number, number]): [number, number] {
  return [Math.max(1, Math.round(lo * n)), Math.max(1, Math.round(hi * n))];
}

function overlaps(a: DapBox, b: DapBox): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/** Non-overlapping boxes of the given sizes in an H × W image, seeded. */
function placeBoxes(rng: Rng, sizes: readonly [number, number][], H: number, W: number, cell: [number, number]): DapBox[] {
  for (let restart = 0; restart < PLACEMENT_RESTARTS; restart++) {
    const placed: DapBox[] = [];
    for (const [w, h] of sizes) {
      let box: DapBox | null = null;
      for (let k = 0; k < PLACEMENT_TRIES && !box; k++) {
        const x0 = rng.int(W - w + 1);
        const y0 = rng.int(H - h + 1);
        const candidate: DapBox = [x0, y0, x0 + w, y0 + h];
        if (!placed.some((p) => overlaps(p, candidate))) box = candidate;
      }
      if (!box) break;
      placed.push(box);
    }
    if (placed.length === sizes.length) return placed;
  }
  // Grid cells of the largest patch size always fit them all (checked by the caller).
  const cols = Math.floor(W / cell[0]);
  const rows = Math.floor(H / cell[1]);
  const order = Array.from({ length: cols * rows }, (_, i) => i);
  rng.shuffle(order);
  return sizes.map(([w, h], i) => {
    const c = order[i] % cols;
    const r = Math.floor(order[i] / cols);
    const x0 = c * cell[0] + rng.int(cell[0] - w + 1);
    const y0 = r * cell[1] + rng.int(cell[1] - h + 1);
    return [x0, y0, x0 + w, y0 + h] as DapBox;
  });
}

/** Patch counts, boxes and classes of every image, and the attack rows: all host-side and seeded. */
function planPatches(o: DapOptions, classes: number): Plan {
  const [, H, W] = o.image;
  const [lo, hi] = o.patches ?? DEFAULTS.patches;
  const fraction = o.sideFraction ?? DEFAULTS.sideFraction;
  const [wMin, wMax] = sideRange(W, fraction);
  const [hMin, hMax] = sideRange(H, fraction);
  const rng = Rng.derive(o.seed, `dap:${o.variant}`);
  const plan: Plan = { patches: [], rows: [] };
  for (let i = 0; i < o.count; i++) {
    const k = lo + rng.int(hi - lo + 1);
    const sizes = Array.from({ length: k }, (): [number, number] => [wMin + rng.int(wMax - wMin + 1), hMin + rng.int(hMax - hMin + 1)]);
    const boxes = placeBoxes(rng, sizes, H, W, [wMax, hMax]);
    const first = o.targets ? o.targets[i] : rng.int(classes);
    let targets: number[];
    if (o.variant === 'dap1') {
      targets = boxes.map(() => first);
      plan.rows.push({ image: i, patches: boxes.map((_, j) => j), target: first });
    } else {
      const others = Array.from({ length: classes }, (_, c) => c).filter((c) => c !== first);
      rng.shuffle(others);
      targets = [first, ...others.slice(0, k - 1)];
      targets.forEach((c, j) => plan.rows.push({ image: i, patches: [j], target: c }));
    }
    plan.patches.push(boxes.map((box, j) => ({ box, target: targets[j] })));
  }
  return plan;
}

function checkOptions(o: DapOptions, classes: number): void {
  if (o.variant !== 'dap1' && o.variant !== 'dap2') throw new InputError(`DAP: variant must be 'dap1' or 'dap2', got '${String(o.variant)}'`);
  positiveInt(o.count, 'the image count');
  if (!Number.isInteger(o.seed)) throw new InputError(`DAP: the seed must be a whole number, got ${o.seed}`);
  const [C, H, W] = o.image;
  const [lo, hi] = o.patches ?? DEFAULTS.patches;
  positiveInt(lo, 'the fewest patches per image');
  positiveInt(hi, 'the most patches per image');
  if (hi < lo) throw new InputError(`DAP: patches [${lo}, ${hi}]: the most is below the fewest`);
  const fraction = o.sideFraction ?? DEFAULTS.sideFraction;
  if (fraction.length !== 2 || !fraction.every((f) => f > 0 && f < 1) || fraction[1] < fraction[0]) {
    throw new InputError(`DAP: sideFraction must be [lo, hi] with 0 < lo ≤ hi < 1, got [${fraction.join(', ')}]`);
  }
  const [wMax, hMax] = [sideRange(W, fraction)[1], sideRange(H, fraction)[1]];
  const fit = Math.floor(W / wMax) * Math.floor(H / hMax);
  if (hi > fit) throw new InputError(`DAP: ${hi} patches of up to ${wMax}×${hMax} px do not surely fit side by side in a ${W}×${H} image (at most ${fit}); lower patches[1] or sideFraction[1]`);
  if (o.variant === 'dap2' && hi > classes) throw new InputError(`DAP2: each patch of an image has its own class, but ${hi} patches were asked of a model with ${classes} classes`);
  positiveInt(o.iterations ?? DEFAULTS.iterations, 'the iteration count');
  const eps = o.epsilon ?? DEFAULTS.epsilon;
  const step = o.step ?? DEFAULTS.step;
  if (!(eps > 0 && Number.isFinite(eps))) throw new InputError(`DAP: epsilon must be a positive number (pixels), got ${eps}`);
  if (!(step > 0 && Number.isFinite(step))) throw new InputError(`DAP: the step must be a positive number (pixels), got ${step}`);
  if (o.targets) {
    if (o.targets.length !== o.count) throw new InputError(`DAP: ${o.targets.length} targets for ${o.count} images; give one per image`);
    o.targets.forEach((c, i) => {
      if (!(Number.isInteger(c) && c >= 0 && c < classes)) throw new InputError(`DAP: target ${c} of image ${i} is not a class in [0, ${classes})`);
    });
  }
  if (o.pixels) {
    const { mean, std } = o.pixels;
    const ok = (v: readonly number[]) => v.length === 1 || v.length === C;
    if (!ok(mean) || !ok(std) || std.some((s) => !(s > 0 && Number.isFinite(s))) || mean.some((m) => !Number.isFinite(m))) {
      throw new InputError(`DAP: pixels needs 1 or ${C} finite means and positive standard deviations, got ${mean.length} and ${std.length}`);
    }
  }
  if (o.backgrounds) {
    if (o.variant !== 'dap1') throw new InputError('DAP2 images are patches only (seed 002 §2.2): backgrounds apply to DAP1');
    o.backgrounds.assertAlive();
    const b = o.backgrounds.shape;
    if (b.length !== 4 || b[0] < 1 || b[1] !== C || b[2] !== H || b[3] !== W) throw new ShapeError('DAP: backgrounds', `must be [B, ${C}, ${H}, ${W}] with B ≥ 1, got ${formatShape(b)}`);
  }
  if (o.maxChunk !== undefined) positiveInt(o.maxChunk, 'maxChunk');
}

function perChannel(v: readonly number[], C: number): Float32Array {
  return Float32Array.from({ length: C }, (_, c) => v[v.length === 1 ? 0 : c]);
}

/**
 * Makes `count` DAP1 or DAP2 images with a seeded targeted iterative FGSM on the GPU: one
 * compiled program per step (forward, the target's backward to the input, the masked sign
 * step and the clip), run `iterations` times on the attack rows' pixels, which stay on the
 * GPU; then the images are composed and scored (one program per group of images that fits
 * a binding) and the attack rows scored. The logits are read back once, at the end, for the
 * outcomes.
 */
export async function makeDapImages(model: Model, o: DapOptions): Promise<DapImages> {
  if (!o || typeof o !== 'object') throw new InputError('DAP: options are required');
  if (!Array.isArray(o.image) || o.image.length !== 3 || o.image.some((d) => !(Number.isInteger(d) && d >= 1))) {
    throw new ShapeError('DAP: image', `must be [C, H, W] with positive whole sides, got ${Array.isArray(o.image) ? formatShape(o.image) : String(o.image)}`);
  }
  const image = [...o.image] as [number, number, number];
  const probe = model.tape(1, { image });
  const classes = probe.logits.shape.at(-1)!;
  if (probe.logits.shape.length !== 2) throw new ShapeError(`${model.graph.file}: DAP targets`, `need logits [N, classes], got ${formatShape(probe.logits.shape)}`);
  checkOptions(o, classes);
  const [C, H, W] = image;
  const ctx = model.ctx;
  const plan = planPatches(o, classes);
  const R = plan.rows.length;
  const iterations = o.iterations ?? DEFAULTS.iterations;
  const eps = o.epsilon ?? DEFAULTS.epsilon;
  const step = o.step ?? DEFAULTS.step;
  const mean = perChannel(o.pixels?.mean ?? [0], C);
  const std = perChannel(o.pixels?.std ?? [1], C);
  // The patch pixels stay in [0, 1] and within ε of the zero image.
  const hi = Math.min(1, eps);

  const rowMask = new Float32Array(R * H * W);
  const rowTarget = new Float32Array(R * classes);
  plan.rows.forEach((row, r) => {
    rowTarget[r * classes + row.target] = 1;
    for (const j of row.patches) {
      const [x0, y0, x1, y1] = plan.patches[row.image][j].box;
      for (let y = y0; y < y1; y++) rowMask.fill(1, (r * H + y) * W + x0, (r * H + y) * W + x1);
    }
  });
  const mask = Tensor.fromData(ctx, rowMask, [R, 1, H, W], 'dap-mask');
  const target = Tensor.fromData(ctx, rowTarget, [R, classes], 'dap-target');
  const normalize = (t: Tape, p: Sym) => t.div(t.sub(p, t.constant(hostTensor('float32', [1, C, 1, 1], mean))), t.constant(hostTensor('float32', [1, C, 1, 1], std)));
  const shared = (n: string) => model.isModelConstant(n);
  const owned: Tensor[] = [mask, target];
  // The attack rows' pixels: replaced by each step's result, disposed whatever happens.
  let pixels = Tensor.fromData(ctx, new Float32Array(R * C * H * W), [R, C, H, W], 'dap-pixels');
  let unreturned: Tensor | null = null;
  try {
    for (let it = 0; it < iterations; it++) {
      const run = await model.runProgram({
        key: `dap-step|${image}|${classes}|${mean}|${std}|${step}|${hi}`,
        batch: R,
        maxChunk: o.maxChunk,
        build: (nb) => {
          const t = new Tape();
          const p = t.input('pixels', [nb, C, H, W]);
          const m = t.input('mask', [nb, 1, H, W]);
          const onehot = t.input('target', [nb, classes]);
          // y = Σ (onehot − softmax)·logits with the weights held fixed: ∂y/∂logits = ∇ log softmax_c.
          const mt = model.tape(nb, {
            image,
            wrt: ['input'],
            target: { of: 'logit', weights: (tape, logits) => tape.sub(onehot, tape.softmax(logits, -1)) },
            onto: { tape: t, input: normalize(t, p), prefix: 'dap/' },
          });
          const g = mt.gradients.get('input');
          if (!g) throw new InputError(`${model.graph.file}: the logits do not depend on the input, so there is nothing to attack`);
          // sign(g), 0 where g = 0 (where tests g ≠ 0 through relu: exact, no division).
          const one = t.broadcast(t.scalar(1), g.shape);
          const zero = t.broadcast(t.scalar(0), g.shape);
          const negative = t.where(t.activation(t.mul(g, t.scalar(-1)), { kind: 'relu' }), t.mul(one, t.scalar(-1)), zero);
          const sign = t.where(t.activation(g, { kind: 'relu' }), one, negative);
          const next = t.activation(t.add(p, t.mul(t.mul(sign, m), t.scalar(step))), { kind: 'clip', min: 0, max: hi });
          return { graph: t.graph, names: new Map([['pixels', next.name]]), shared };
        },
        feeds: { pixels: { tensor: pixels, batchAxis: 0 }, mask: { tensor: mask, batchAxis: 0 }, target: { tensor: target, batchAxis: 0 } },
        results: { pixels: { batchAxis: 0 } },
        label: 'dap-fgsm',
      });
      // The previous state's buffer returns to the pool; the queue runs in order, so a later
      // submit that reuses it cannot overtake this step.
      pixels.dispose();
      pixels = run.results.get('pixels')!;
    }

    const { x, logits: imageLogits } = await composeImages(model, { pixels, plan, image, classes, mean, std, normalize, backgrounds: o.backgrounds, maxChunk: o.maxChunk });
    owned.push(imageLogits);
    // The caller's once returned; freed here if anything below fails.
    unreturned = x;
    const check = await model.runProgram({
      key: `dap-rows|${image}|${classes}|${mean}|${std}`,
      batch: R,
      maxChunk: o.maxChunk,
      build: (nb) => {
        const t = new Tape();
        const p = t.input('pixels', [nb, C, H, W]);
        const mt = model.tape(nb, { image, onto: { tape: t, input: normalize(t, p), prefix: 'dap/rows/' } });
        return { graph: t.graph, names: new Map([['logits', mt.logits.name]]), shared };
      },
      feeds: { pixels: { tensor: pixels, batchAxis: 0 } },
      results: { logits: { batchAxis: 0 } },
      label: 'dap-check',
    });
    const rowLogits = check.results.get('logits')!;
    owned.push(rowLogits);
    const [rowValues, imageValues] = await readTensors(ctx, [rowLogits, imageLogits]);
    const argmax = (v: Float32Array, i: number) => {
      let best = 0;
      for (let c = 1; c < classes; c++) if (v[i * classes + c] > v[i * classes + best]) best = c;
      return best;
    };
    const patches: DapPatch[][] = plan.patches.map((list) => list.map((p) => ({ ...p, success: false })));
    plan.rows.forEach((row, r) => {
      const ok = argmax(rowValues, r) === row.target;
      for (const j of row.patches) patches[row.image][j].success = ok;
    });
    const success = patches.map((list) => list.every((p) => p.success));
    unreturned = null;
    return {
      x,
      targets: patches.map((list) => list[0].target),
      boxes: patches.map((list) => (o.variant === 'dap1' ? list.map((p) => p.box) : [list[0].box])),
      patches,
      success,
      successRate: success.filter(Boolean).length / o.count,
      predicted: Array.from({ length: o.count }, (_, i) => argmax(imageValues, i)),
    };
  } finally {
    unreturned?.dispose();
    pixels.dispose();
    for (const t of owned) t.dispose();
  }
}

interface ComposeInputs {
  /** The attack rows' final pixels [R, C, H, W]; the rows of one image are contiguous. */
  pixels: Tensor;
  plan: Plan;
  image: readonly [number, number, number];
  classes: number;
  mean: Float32Array;
  std: Float32Array;
  normalize: (t: Tape, p: Sym) => Sym;
  backgrounds?: Tensor;
  maxChunk?: number;
}

/**
 * The images from their attack rows, and their logits. Each image's pixels are the sum of
 * its rows' (disjoint patches, zero elsewhere: exact), gathered slot by slot (slot s: the
 * image's s-th row, or nothing); outside its patches an image is exactly its background (the
 * normalized zero image, or the given natural image). The rows every pass reads are copied
 * out in groups of images that fit a binding, so large sets split instead of failing.
 */
async function composeImages(model: Model, c: ComposeInputs): Promise<{ x: Tensor; logits: Tensor }> {
  const ctx = model.ctx;
  const [C, H, W] = c.image;
  const count = c.plan.patches.length;
  const R = c.plan.rows.length;
  const rowsOf = Array.from({ length: count }, () => [] as number[]);
  c.plan.rows.forEach((row, r) => rowsOf[row.image].push(r));
  const slots = Math.max(...rowsOf.map((r) => r.length));
  const rowBytes = C * H * W * 4;
  const budget = Math.max(slots * rowBytes, Math.floor(ctx.activationBindingLimit / 4));
  const groups: { i0: number; i1: number; r0: number; r1: number }[] = [];
  for (let i = 0; i < count; i++) {
    const last = groups.at(-1);
    const r1 = rowsOf[i][rowsOf[i].length - 1] + 1;
    if (last && (r1 - last.r0) * rowBytes <= budget) Object.assign(last, { i1: i + 1, r1 });
    else groups.push({ i0: i, i1: i + 1, r0: rowsOf[i][0], r1 });
  }
  const B = c.backgrounds?.shape[0] ?? 0;
  const zeroImage = Float32Array.from({ length: C }, (_, k) => (0 - c.mean[k]) / c.std[k]);
  const parts: { x: Tensor; logits: Tensor; i0: number }[] = [];
  try {
    for (const g of groups) {
      const n = g.i1 - g.i0;
      const Rg = g.r1 - g.r0;
      const owned: Tensor[] = [];
      try {
        let rows = c.pixels;
        if (Rg < R) {
          rows = Tensor.empty(ctx, [Rg, C, H, W], 'dap-group-rows');
          owned.push(rows);
          const enc = ctx.device.createCommandEncoder({ label: 'dap-group-rows' });
          enc.copyBufferToBuffer(c.pixels.buffer, c.pixels.byteOffset + g.r0 * rowBytes, rows.buffer, rows.byteOffset, Rg * rowBytes);
          ctx.device.queue.submit([enc.finish()]);
        }
        const fields = new Map<string, Float32Array>();
        for (let s = 0; s < slots; s++) {
          const row = new Float32Array(n);
          const present = new Float32Array(n);
          for (let i = g.i0; i < g.i1; i++) {
            if (s >= rowsOf[i].length) continue;
            row[i - g.i0] = rowsOf[i][s] - g.r0;
            present[i - g.i0] = 1;
          }
          fields.set(`row${s}`, row);
          fields.set(`present${s}`, present);
        }
        fields.set('background', Float32Array.from({ length: n }, (_, k) => (B ? (g.i0 + k) % B : 0)));
        const union = new Float32Array(n * H * W);
        for (let i = g.i0; i < g.i1; i++) {
          for (const { box: [x0, y0, x1, y1] } of c.plan.patches[i]) for (let y = y0; y < y1; y++) union.fill(1, ((i - g.i0) * H + y) * W + x0, ((i - g.i0) * H + y) * W + x1);
        }
        const unionMask = Tensor.fromData(ctx, union, [n, 1, H, W], 'dap-union');
        owned.push(unionMask);
        const fieldTensors = [...fields].map(([name, f]) => [name, Tensor.fromData(ctx, f, [n], `dap-${name}`)] as const);
        owned.push(...fieldTensors.map(([, t]) => t));
        const run = await model.runProgram({
          key: `dap-compose|${c.image}|${c.classes}|${c.mean}|${c.std}|${slots}|${c.backgrounds ? `bg${formatShape(c.backgrounds.shape)}` : 'zero'}|${Rg}`,
          batch: n,
          maxChunk: c.maxChunk,
          build: (nb) => {
            const t = new Tape();
            const rowSym = t.input('rows', [Rg, C, H, W]);
            const inside = t.input('union', [nb, 1, H, W]);
            const f: Record<string, Sym> = {};
            for (const [name] of fieldTensors) f[name] = t.input(`f_${name}`, [nb]);
            let pix: Sym | null = null;
            for (let s = 0; s < slots; s++) {
              const part = t.mul(t.gatherRows(rowSym, f[`row${s}`]), t.reshape(f[`present${s}`], [nb, 1, 1, 1]));
              pix = pix ? t.add(pix, part) : part;
            }
            const background = c.backgrounds
              ? t.gatherRows(t.input('backgrounds', c.backgrounds.shape), f.background)
              : t.broadcast(t.constant(hostTensor('float32', [1, C, 1, 1], zeroImage)), [nb, C, H, W]);
            const x = t.where(t.broadcast(inside, [nb, C, H, W]), c.normalize(t, pix!), background);
            const composite = model.tape(nb, { image: c.image, onto: { tape: t, input: x, prefix: 'dap/image/' } });
            return { graph: t.graph, names: new Map([['x', x.name], ['logits', composite.logits.name]]), shared: (name: string) => model.isModelConstant(name) };
          },
          feeds: {
            rows: { tensor: rows, batchAxis: null },
            union: { tensor: unionMask, batchAxis: 0 },
            ...Object.fromEntries(fieldTensors.map(([name, tensor]) => [`f_${name}`, { tensor, batchAxis: 0 as const }])),
            ...(c.backgrounds ? { backgrounds: { tensor: c.backgrounds, batchAxis: null } } : {}),
          },
          results: { x: { batchAxis: 0 }, logits: { batchAxis: 0 } },
          label: 'dap-compose',
        });
        parts.push({ x: run.results.get('x')!, logits: run.results.get('logits')!, i0: g.i0 });
      } finally {
        for (const t of owned) t.dispose();
      }
    }
    if (parts.length === 1) {
      const [only] = parts.splice(0);
      return { x: only.x, logits: only.logits };
    }
    const x = Tensor.empty(ctx, [count, C, H, W], 'dap-images');
    const logits = Tensor.empty(ctx, [count, c.classes], 'dap-image-logits');
    const enc = ctx.device.createCommandEncoder({ label: 'dap-images' });
    for (const p of parts) {
      enc.copyBufferToBuffer(p.x.buffer, p.x.byteOffset, x.buffer, x.byteOffset + p.i0 * rowBytes, p.x.byteLength);
      enc.copyBufferToBuffer(p.logits.buffer, p.logits.byteOffset, logits.buffer, logits.byteOffset + p.i0 * c.classes * 4, p.logits.byteLength);
    }
    ctx.device.queue.submit([enc.finish()]);
    return { x, logits };
  } finally {
    for (const p of parts) {
      p.x.dispose();
      p.logits.dispose();
    }
  }
}
