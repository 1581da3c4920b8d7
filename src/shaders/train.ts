import { type KernelDef, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

/**
 * Kernels around a training program: batches gathered on the GPU from a uint8 dataset that
 * stays there, and metrics (loss, predictions, correct counts) kept in per-epoch buffers and
 * summed once per evaluation. No atomics: every sum has a fixed order.
 */
export const TRAIN_WG = 256;

export const GATHER_IMAGES_PARAMS = new ParamLayout([
  /** vec4s to write: batch · words per image. */
  ['n', 'u32'],
  /** u32 words (4 pixels) per image. */
  ['words', 'u32'],
  /** First entry of Index this batch reads. */
  ['offset', 'u32'],
  ['mean', 'f32'],
  ['inv_std', 'f32'],
]);

/**
 * X[b] = (Data[Index[offset + b]] / 255 − mean) · inv_std: images of 4·words uint8 pixels,
 * packed 4 per u32 (little-endian), one word → one vec4 per invocation.
 */
export function gatherImagesKernel(): KernelDef {
  return {
    key: 'train/gather_images',
    params: GATHER_IMAGES_PARAMS,
    storage: [
      { name: 'Data', access: 'read', element: 'u32' },
      { name: 'Index', access: 'read', element: 'u32' },
      { name: 'X', access: 'read_write', element: 'vec4<f32>' },
    ],
    body: `${elementwiseMain(TRAIN_WG, 'params.n', `  let b = i / params.words;
  let img = Index[params.offset + b];
  let w = Data[img * params.words + i % params.words];
  let px = vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu), f32(w >> 24u));
  X[i] = (px / 255.0 - vec4<f32>(params.mean)) * params.inv_std;`)}`,
  };
}

export const GATHER_LABELS_PARAMS = new ParamLayout([
  ['batch', 'u32'],
  ['classes', 'u32'],
  ['offset', 'u32'],
  /** The seed's non-zero value: −1/batch, the gradient of the mean cross-entropy w.r.t. log-probabilities. */
  ['scale', 'f32'],
]);

/**
 * Seed[b, c] = scale at the label of item Index[offset + b], else 0, and BatchLabels[b] =
 * that label (Labels holds one label per u32).
 */
export function gatherLabelsKernel(): KernelDef {
  return {
    key: 'train/gather_labels',
    params: GATHER_LABELS_PARAMS,
    storage: [
      { name: 'Labels', access: 'read', element: 'u32' },
      { name: 'Index', access: 'read', element: 'u32' },
      { name: 'Seed', access: 'read_write', element: 'f32' },
      { name: 'BatchLabels', access: 'read_write', element: 'u32' },
    ],
    body: `${elementwiseMain(TRAIN_WG, 'params.batch * params.classes', `  let b = i / params.classes;
  let c = i % params.classes;
  let label = Labels[Index[params.offset + b]];
  Seed[i] = select(0.0, params.scale, c == label);
  if (c == 0u) { BatchLabels[b] = label; }`)}`,
  };
}

export const CLASSIFY_PARAMS = new ParamLayout([
  ['batch', 'u32'],
  ['classes', 'u32'],
  /** Where this batch's rows go in Pred / Loss (its offset into the index buffer). */
  ['offset', 'u32'],
]);

/** Pred[offset + b] = argmax_c LogP[b, c] (first maximum), Loss[offset + b] = −LogP[b, label_b]. */
export function classifyKernel(): KernelDef {
  return {
    key: 'train/classify',
    params: CLASSIFY_PARAMS,
    storage: [
      { name: 'LogP', access: 'read', element: 'f32' },
      { name: 'BatchLabels', access: 'read', element: 'u32' },
      { name: 'Pred', access: 'read_write', element: 'u32' },
      { name: 'Loss', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= params.batch) { return; }
  let base = b * params.classes;
  var best = 0u;
  for (var c = 1u; c < params.classes; c++) {
    if (LogP[base + c] > LogP[base + best]) { best = c; }
  }
  Pred[params.offset + b] = best;
  Loss[params.offset + b] = -LogP[base + BatchLabels[b]];
}
`,
  };
}

export const TALLY_PARAMS = new ParamLayout([
  /** Items to count. */
  ['count', 'u32'],
  /** Items per partial. */
  ['chunk', 'u32'],
  ['parts', 'u32'],
]);

/**
 * Partial[2j] = correct predictions among items [j·chunk, (j+1)·chunk) (item i's label is
 * Labels[Index[i]]), Partial[2j + 1] = the sum of their losses; then tallyFoldKernel.
 */
export function tallyKernel(): KernelDef {
  return {
    key: 'train/tally',
    params: TALLY_PARAMS,
    storage: [
      { name: 'Pred', access: 'read', element: 'u32' },
      { name: 'Loss', access: 'read', element: 'f32' },
      { name: 'Index', access: 'read', element: 'u32' },
      { name: 'Labels', access: 'read', element: 'u32' },
      { name: 'Partial', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= params.parts) { return; }
  let end = min(params.count, (j + 1u) * params.chunk);
  var correct = 0u;
  var loss = 0.0;
  for (var i = j * params.chunk; i < end; i++) {
    correct += select(0u, 1u, Pred[i] == Labels[Index[i]]);
    loss += Loss[i];
  }
  Partial[2u * j] = f32(correct);
  Partial[2u * j + 1u] = loss;
}
`,
  };
}

/** Out = [correct, loss sum]: the partials folded in order by one invocation. */
export function tallyFoldKernel(): KernelDef {
  return {
    key: 'train/tally_fold',
    params: TALLY_PARAMS,
    storage: [
      { name: 'Partial', access: 'read', element: 'f32' },
      { name: 'Out', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(1)
fn main() {
  var correct = 0.0;
  var loss = 0.0;
  for (var j = 0u; j < params.parts; j++) {
    correct += Partial[2u * j];
    loss += Partial[2u * j + 1u];
  }
  Out[0] = correct;
  Out[1] = loss;
}
`,
  };
}
