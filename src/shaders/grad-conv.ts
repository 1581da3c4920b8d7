import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

/** Kernels of a convolution's backward pass (src/ops/grad-conv.ts decides which run). */
export const GRAD_CONV_WG = 64;

export const FLIP_WEIGHTS_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['cin_g', 'u32'],
  ['cout_g', 'u32'],
  ['KH', 'u32'],
  ['KW', 'u32'],
]);

/**
 * W'[g·Cin_g + ci][co][KH−1−kh][KW−1−kw] = W[g·Cout_g + co][ci][kh][kw]: the weights of the
 * forward convolution whose output is a unit-stride convolution's input gradient.
 */
export function flipConvWeightsKernel(): KernelDef {
  return {
    key: 'conv_grad/flip_weights',
    params: FLIP_WEIGHTS_PARAMS,
    storage: [
      { name: 'W', access: 'read', element: 'f32' },
      { name: 'Wf', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(256, 'params.n', `  let KK = params.KH * params.KW;
  let kw = i % params.KW;
  let kh = (i / params.KW) % params.KH;
  let co = (i / KK) % params.cout_g;
  let c = i / (KK * params.cout_g);
  let g = c / params.cin_g;
  let ci = c % params.cin_g;
  Wf[i] = W[((g * params.cout_g + co) * params.cin_g + ci) * KK + (params.KH - 1u - kh) * params.KW + (params.KW - 1u - kw)];`)}`,
  };
}

const GEOMETRY = [
  ['H', 'u32'],
  ['W', 'u32'],
  ['OH', 'u32'],
  ['OW', 'u32'],
  ['KH', 'u32'],
  ['KW', 'u32'],
  ['stride_h', 'u32'],
  ['stride_w', 'u32'],
  ['pad_h', 'i32'],
  ['pad_w', 'i32'],
  ['dil_h', 'u32'],
  ['dil_w', 'u32'],
] as const;

export const PHASE_WEIGHTS_PARAMS = new ParamLayout([
  ['n', 'u32'], ['cin_g', 'u32'], ['cout_g', 'u32'], ['KH', 'u32'], ['KW', 'u32'],
  ['TH', 'u32'], ['TW', 'u32'], ['rh', 'u32'], ['rw', 'u32'], ['sh', 'u32'], ['sw', 'u32'],
]);

/**
 * The taps of one sub-pixel phase (rh, rw) of a strided conv, transposed and flipped:
 * Wp[g·Cin_g + ci][co][t][u] = W[g·Cout_g + co][ci][rh + sh·(TH−1−t)][rw + sw·(TW−1−u)].
 * Convolving gy with it at stride 1 gives the input gradient on that phase's positions.
 */
export function phaseWeightsKernel(): KernelDef {
  return {
    key: 'conv_grad/phase_weights',
    params: PHASE_WEIGHTS_PARAMS,
    storage: [
      { name: 'W', access: 'read', element: 'f32' },
      { name: 'Wp', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(256, 'params.n', `  let TT = params.TH * params.TW;
  let u = i % params.TW;
  let t = (i / params.TW) % params.TH;
  let co = (i / TT) % params.cout_g;
  let c = i / (TT * params.cout_g);
  let g = c / params.cin_g;
  let ci = c % params.cin_g;
  let kh = params.rh + params.sh * (params.TH - 1u - t);
  let kw = params.rw + params.sw * (params.TW - 1u - u);
  Wp[i] = W[((g * params.cout_g + co) * params.cin_g + ci) * params.KH * params.KW + kh * params.KW + kw];`)}`,
  };
}

export const FILL_PARAMS = new ParamLayout([['n', 'u32'], ['value', 'f32']]);

/** y = value everywhere (the input gradient at phases no tap reaches). */
export function fillKernel(): KernelDef {
  return {
    key: 'fill',
    params: FILL_PARAMS,
    storage: [{ name: 'Y', access: 'read_write', element: 'f32' }],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * 256u + li;
  if (i < params.n) { Y[i] = params.value; }
}
`,
  };
}

export const CONV_GRAD_INPUT_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['groups', 'u32'],
  ['cin_g', 'u32'],
  ['cout_g', 'u32'],
  ['cblocks', 'u32'],
  ['HC', 'u32'],
  ['WB', 'u32'],
  ...GEOMETRY,
]);

/** Input channels one invocation of the gather kernel accumulates: they share every GY load. */
export const GRAD_INPUT_CI = 4;
/** Same-phase positions along a row one invocation accumulates: they share every weight load. */
export const GRAD_INPUT_POS = 4;

/**
 * GX[n, g·Cin_g + ci, ih, iw] = Σ_{co, kh, kw} GY[n, g·Cout_g + co, oh, ow] · W[g·Cout_g + co, ci, kh, kw]
 * over the taps with oh·s = ih + pad − kh·d (and likewise for w), for any stride, pad
 * (negative too) and dilation. Which taps are whole depends only on a position's phase
 * (ih mod s_h, iw mod s_w), so positions are enumerated phase-major (⌈H/s_h⌉ rows of WB
 * blocks per phase): neighbouring invocations take the same taps and do not diverge. An
 * invocation owns GRAD_INPUT_CI input channels of one group × GRAD_INPUT_POS positions
 * iw = pw + s_w·u of one phase row, whose output columns ow are consecutive for every tap.
 */
export function convGradInputKernel(): KernelDef {
  const C = GRAD_INPUT_CI;
  const P = GRAD_INPUT_POS;
  const cs = Array.from({ length: C }, (_, i) => i);
  const ps = Array.from({ length: P }, (_, j) => j);
  return {
    key: 'conv_grad/input_gather',
    params: CONV_GRAD_INPUT_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'Wt', access: 'read', element: 'f32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(GRAD_CONV_WG, 'params.n', `  let sh = params.stride_h;
  let sw = params.stride_w;
  let slots = sh * sw * params.HC * params.WB;
  let slot = i % slots;
  let t = i / slots;
  let cb = t % params.cblocks;
  let t2 = t / params.cblocks;
  let g = t2 % params.groups;
  let img = t2 / params.groups;
  let phase = slot / (params.HC * params.WB);
  let within = slot % (params.HC * params.WB);
  let ihu = phase / sw + sh * (within / params.WB);
  let iw0u = phase % sw + sw * ${P}u * (within % params.WB);
  if (ihu >= params.H || iw0u >= params.W) { return; }
  let ih = i32(ihu);
  let iw0 = i32(iw0u);
  let Si = i32(sw);
  let OWi = i32(params.OW);
  let HW = params.H * params.W;
  let ci0 = cb * ${C}u;
  let KK = params.KH * params.KW;
  let OHW = params.OH * params.OW;
  let gy_base = (img * params.groups + g) * params.cout_g * OHW;
  let w_group = g * params.cout_g * params.cin_g * KK;
  let w_co = params.cin_g * KK;
${cs.map((c) => `  let wc${c} = min(ci0 + ${c}u, params.cin_g - 1u) * KK;`).join('\n')}
${cs.map((c) => `  var ${ps.map((j) => `a${c}_${j} = 0.0`).join('; var ')};`).join('\n')}
  for (var kh = 0u; kh < params.KH; kh++) {
    let th = ih + params.pad_h - i32(kh * params.dil_h);
    // th only decreases with kh: once above the output, every later tap is too.
    if (th < 0) { break; }
    if (u32(th) % sh != 0u) { continue; }
    let oh = u32(th) / sh;
    if (oh >= params.OH) { continue; }
    for (var kw = 0u; kw < params.KW; kw++) {
      let tw = iw0 + params.pad_w - i32(kw * params.dil_w);
      // The same phase for all positions: whole for one, whole for all; columns ow0 + j.
      if (((tw % Si) + Si) % Si != 0) { continue; }
      let ow0 = tw / Si;
      if (ow0 >= OWi || ow0 + ${P - 1} < 0) { continue; }
      let gy_off = i32(gy_base + oh * params.OW) + ow0;
${ps.map((j) => `      let ok${j} = ow0 + ${j} >= 0 && ow0 + ${j} < OWi;`).join('\n')}
      let w_off = w_group + kh * params.KW + kw;
      for (var co = 0u; co < params.cout_g; co++) {
        let gb = gy_off + i32(co * OHW);
${ps.map((j) => `        let g${j} = select(0.0, GY[select(0u, u32(gb + ${j}), ok${j})], ok${j});`).join('\n')}
        let wb = w_off + co * w_co;
${cs.map((c) => `        { let w = Wt[wb + wc${c}]; ${ps.map((j) => `a${c}_${j} = fma(g${j}, w, a${c}_${j});`).join(' ')} }`).join('\n')}
      }
    }
  }
  var outv: array<f32, ${C * P}>;
  ${cs.flatMap((c) => ps.map((j) => `outv[${c * P + j}] = a${c}_${j};`)).join(' ')}
  let gx = ((img * params.groups + g) * params.cin_g + ci0) * HW + ihu * params.W + iw0u;
  for (var q = 0u; q < ${C * P}u; q++) {
    let c = q / ${P}u;
    let j = q % ${P}u;
    if (ci0 + c < params.cin_g && iw0u + j * sw < params.W) { GX[gx + c * HW + j * sw] = outv[q]; }
  }`)}`,
  };
}

export const CONV_GRAD_WEIGHT_PARAMS = new ParamLayout([
  ['M', 'u32'],
  ['NC', 'u32'],
  ['tiles_n', 'u32'],
  ['tiles', 'u32'],
  ['groups', 'u32'],
  ['cin_g', 'u32'],
  ['rows', 'u32'],
  ['rows_per', 'u32'],
  ['part_stride', 'u32'],
  ...GEOMETRY,
]);

export interface GradWeightTiling {
  /** Output channels (rows of the product) per invocation. */
  tm: number;
  /** (ci, kh, kw) columns per invocation. */
  tn: number;
}

/**
 * Weight gradient as an implicit GEMM, register-tiled like src/shaders/gemm.ts (no workgroup
 * memory, no barriers): GW[g·M + m, col] = Σ_k GY[k; g·M + m] · X[k; col] with
 * M = Cout_g rows, col = (ci, kh, kw) over Cin_g·KH·KW, and the reduction k = (n, oh, ow)
 * walked as rows r = n·OH + oh (one division each) and ow inside. Invocations are laid out
 * linearly over (group, row tile, column tile), so even depthwise convs fill workgroups;
 * workgroup_id.y takes a slice of rows [y·rows_per, (y+1)·rows_per) and writes its partial
 * at y·part_stride (0 when there is a single slice: straight into GW).
 */
export function convGradWeightKernel(t: GradWeightTiling): KernelDef {
  const TM = t.tm;
  const TN = t.tn;
  const ms = Array.from({ length: TM }, (_, i) => i);
  const ns = Array.from({ length: TN }, (_, j) => j);
  const L: string[] = [];
  L.push(`@compute @workgroup_size(${GRAD_CONV_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let tix = wid.x * ${GRAD_CONV_WG}u + li;
  if (tix >= params.tiles) { return; }
  let M = params.M;
  let NC = params.NC;
  let tiles_g = params.tiles / params.groups;
  let g = tix / tiles_g;
  let tt = tix % tiles_g;
  let m0 = (tt / params.tiles_n) * ${TM}u;
  let n0 = (tt % params.tiles_n) * ${TN}u;
  let KK = params.KH * params.KW;
  let HW = params.H * params.W;
  let OHW = params.OH * params.OW;
  let C = params.groups * params.cin_g;
  let Hi = i32(params.H);
  let Wi = i32(params.W);`);
  for (const j of ns) {
    L.push(`  let col${j} = min(n0 + ${j}u, NC - 1u);
  let kr${j} = col${j} % KK;
  let xc${j} = (g * params.cin_g + col${j} / KK) * HW;
  let dh${j} = i32((kr${j} / params.KW) * params.dil_h) - params.pad_h;
  let dw${j} = i32((kr${j} % params.KW) * params.dil_w) - params.pad_w;`);
  }
  for (const i of ms) L.push(`  let gc${i} = (g * M + min(m0 + ${i}u, M - 1u)) * OHW;`);
  for (const i of ms) L.push(`  var ${ns.map((j) => `a${i}_${j} = 0.0`).join('; var ')};`);
  L.push(`  let r0 = wid.y * params.rows_per;
  let r1 = min(params.rows, r0 + params.rows_per);
  for (var r = r0; r < r1; r++) {
    let img = r / params.OH;
    let oh = r % params.OH;
    let xi = img * C * HW;
    let gyr = img * params.groups * M * OHW + oh * params.OW;
    let ihb = i32(oh * params.stride_h);`);
  for (const j of ns) {
    L.push(`    let ih${j} = ihb + dh${j};
    let rok${j} = ih${j} >= 0 && ih${j} < Hi;
    let xr${j} = i32(xi + xc${j}) + ih${j} * Wi;`);
  }
  L.push(`    for (var ow = 0u; ow < params.OW; ow++) {
      let iwb = i32(ow * params.stride_w);`);
  for (const j of ns) {
    L.push(`      let iw${j} = iwb + dw${j};
      let ok${j} = rok${j} && iw${j} >= 0 && iw${j} < Wi;
      let b${j} = select(0.0, X[select(0u, u32(xr${j} + iw${j}), ok${j})], ok${j});`);
  }
  for (const i of ms) {
    L.push(`      { let a = GY[gyr + gc${i} + ow]; ${ns.map((j) => `a${i}_${j} = fma(a, b${j}, a${i}_${j});`).join(' ')} }`);
  }
  L.push(`    }
  }
  var outv: array<f32, ${TM * TN}>;
  ${ms.flatMap((i) => ns.map((j) => `outv[${i * TN + j}] = a${i}_${j};`)).join(' ')}
  let base = wid.y * params.part_stride + g * M * NC;
  // A runtime store loop: unrolled guarded stores make llvmpipe's JIT several times slower.
  for (var q = 0u; q < ${TM * TN}u; q++) {
    let m = m0 + q / ${TN}u;
    let c = n0 + q % ${TN}u;
    if (m < M && c < NC) { GW[base + m * NC + c] = outv[q]; }
  }
}
`);
  return {
    key: `conv_grad/weight/${TM}x${TN}`,
    params: CONV_GRAD_WEIGHT_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'GW', access: 'read_write', element: 'f32' },
    ],
    body: L.join('\n'),
  };
}
