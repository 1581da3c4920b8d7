import { ACTIVATION_PARAMS, type Activation, activationWgsl } from './pointwise.js';
import { type KernelDef, ParamLayout } from '../runtime/kernel.js';

/**
 * Kernels for adapters whose subgroups are 8 lanes wide and whose every buffer load costs
 * a per-lane loop: Mesa lavapipe (llvmpipe, 256-bit). Measured there (NOTES.md, "Kernel
 * study"): a value loaded once per subgroup and shared with subgroupBroadcast is ~6× cheaper
 * than a load per lane; vec4 loads cost 0.21 ns per float against 0.36 for scalars; barriers
 * make every later load ~2.8× slower; unrolled guarded stores make the JIT 5–10× slower.
 * So: no workgroup memory, no barriers; 32-row register tiles fed by broadcasts; each
 * accumulator takes a 4-FMA chain per iteration; results leave through a runtime store loop.
 * Shapes are uniforms; only tile sizes, layouts and fused epilogues are compile-time.
 */
export const SG = 8;
/** Rows of the output tile a subgroup owns. */
export const SG_ROWS = 32;
/** Invocations per workgroup: 8 subgroups. */
export const SG_WG = 64;
const NSG = SG_WG / SG;

/** How 8 subgroups of a workgroup split between rows and columns: as many along N as N can use. */
export function subgroupColumns(colsPerSubgroup: number, n: number): number {
  let sgc = NSG;
  while (sgc > 1 && sgc / 2 >= Math.ceil(n / colsPerSubgroup)) sgc /= 2;
  return sgc;
}

const EPILOGUE_PARAMS = [['alpha', 'f32'], ['beta', 'f32'], ...ACTIVATION_PARAMS] as const;

export const SG_MATMUL_PARAMS = new ParamLayout([
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['sgc', 'u32'],
  ['a_off', 'u32'], ['b_off', 'u32'], ['c_off', 'u32'], ['ldc', 'u32'],
  ['sa', 'u32'], ['sb', 'u32'], ['sc', 'u32'],
  ['bias_off', 'u32'], ['bias_sm', 'u32'], ['bias_sn', 'u32'], ['bias_sb', 'u32'],
  ...EPILOGUE_PARAMS,
]);

export interface SgMatmulOptions {
  /** vec4 loads and stores: K % 4 == 0, and for B as [K, N] also N, ldc and offsets % 4 == 0. */
  aligned: boolean;
  /** B stored [K, N] (row-major operand) or [N, K] (weights of a Linear layer, Gemm transB). */
  bLayout: 'kn' | 'nk';
  activation: Activation['kind'];
  bias: boolean;
}

/**
 * C[z] = act(alpha · A[z]·B[z] + beta · bias) with A [M, K] row-major, batched over
 * workgroup_id.z with element strides (0 broadcasts). A subgroup owns 32 rows × 32 columns;
 * lane l owns one vec4 of columns; per iteration k advances by 4: each lane loads one vec4 of
 * A (4 k-values of one of the subgroup's rows) and its B values, and the 32 rows' A values
 * reach every lane by broadcast.
 */
export function sgMatmulKernel(o: SgMatmulOptions): KernelDef {
  const Q = SG_ROWS / SG;
  const T = o.aligned ? 'vec4<f32>' : 'f32';
  const nk = o.bLayout === 'nk';
  const key = `sg8/matmul/${o.aligned ? 'v4' : 's'}/${o.bLayout}/${o.activation}/${o.bias ? 'bias' : 'nobias'}`;
  const L: string[] = [];
  L.push(activationWgsl(o.activation));
  L.push(`@compute @workgroup_size(${SG_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let M = params.M; let N = params.N; let K = params.K;
  let sg = li / ${SG}u;
  let sgr = ${NSG}u / params.sgc;
  let row0 = (wg.y * sgr + sg / params.sgc) * ${SG_ROWS}u;
  let col4 = (wg.x * params.sgc + sg % params.sgc) * ${SG}u + lane;
  let n0 = col4 * 4u;
  let K4 = (K + 3u) / 4u;
  var acc: array<vec4<f32>, ${SG_ROWS}>;`);
  if (o.aligned) {
    L.push(`  let abase = (params.a_off + wg.z * params.sa) / 4u;
  let bbase = (params.b_off + wg.z * params.sb) / 4u;`);
    for (let q = 0; q < Q; q++) L.push(`  let arow${q} = abase + min(row0 + ${q * SG}u + lane, M - 1u) * K4;`);
    if (nk) for (let c = 0; c < 4; c++) L.push(`  let brow${c} = bbase + min(n0 + ${c}u, N - 1u) * K4;`);
    else L.push(`  let N4 = N / 4u;\n  let bcol = bbase + min(col4, N4 - 1u);`);
  } else {
    L.push(`  let abase = params.a_off + wg.z * params.sa;
  let bbase = params.b_off + wg.z * params.sb;`);
    for (let q = 0; q < Q; q++) L.push(`  let arow${q} = abase + min(row0 + ${q * SG}u + lane, M - 1u) * K;`);
  }
  L.push('  for (var k4 = 0u; k4 < K4; k4++) {');
  const ld = (idx: string, ok: string) => `select(0.0, ${'BUF'}[select(0u, ${idx}, ${ok})], ${ok})`;
  if (o.aligned) {
    for (let q = 0; q < Q; q++) L.push(`    let av${q} = A[arow${q} + k4];`);
    if (nk) {
      for (let c = 0; c < 4; c++) L.push(`    let bt${c} = B[brow${c} + k4];`);
      for (let kk = 0; kk < 4; kk++) L.push(`    let b${kk} = vec4<f32>(bt0[${kk}], bt1[${kk}], bt2[${kk}], bt3[${kk}]);`);
    } else {
      for (let kk = 0; kk < 4; kk++) L.push(`    let b${kk} = B[(k4 * 4u + ${kk}u) * N4 + bcol];`);
    }
  } else {
    L.push('    let k = k4 * 4u;');
    for (let q = 0; q < Q; q++) {
      L.push(`    let av${q} = vec4<f32>(${[0, 1, 2, 3].map((i) => ld(`arow${q} + k + ${i}u`, `k + ${i}u < K`).replace('BUF', 'A')).join(', ')});`);
    }
    for (let kk = 0; kk < 4; kk++) {
      const comps = [0, 1, 2, 3].map((c) => {
        const idx = nk ? `bbase + (n0 + ${c}u) * K + k + ${kk}u` : `bbase + (k + ${kk}u) * N + n0 + ${c}u`;
        return ld(idx, `k + ${kk}u < K && n0 + ${c}u < N`).replace('BUF', 'B');
      });
      L.push(`    let b${kk} = vec4<f32>(${comps.join(', ')});`);
    }
  }
  for (let q = 0; q < Q; q++) {
    for (let s = 0; s < SG; s++) {
      const r = q * SG + s;
      L.push(`    { let a = subgroupBroadcast(av${q}, ${s}u); acc[${r}] = fma(vec4<f32>(a[3]), b3, fma(vec4<f32>(a[2]), b2, fma(vec4<f32>(a[1]), b1, fma(vec4<f32>(a[0]), b0, acc[${r}])))); }`);
    }
  }
  L.push(`  }
  var outv: array<vec4<f32>, ${SG_ROWS}>;
  ${Array.from({ length: SG_ROWS }, (_, i) => `outv[${i}] = acc[${i}];`).join(' ')}
  let c_base = params.c_off + wg.z * params.sc;
  for (var r = 0u; r < ${SG_ROWS}u; r++) {
    let row = row0 + r;
    if (row >= M || n0 >= N) { continue; }
    var v = params.alpha * outv[r];`);
  if (o.bias) {
    L.push(`    let bb = params.bias_off + wg.z * params.bias_sb + row * params.bias_sm;
    for (var c = 0u; c < 4u; c++) { if (n0 + c < N) { v[c] += params.beta * Bias[bb + (n0 + c) * params.bias_sn]; } }`);
  }
  L.push('    v = vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));');
  if (o.aligned && !nk) {
    L.push('    C[(c_base + row * params.ldc) / 4u + col4] = v;');
  } else {
    L.push('    for (var c = 0u; c < 4u; c++) { if (n0 + c < N) { C[c_base + row * params.ldc + n0 + c] = v[c]; } }');
  }
  L.push('  }\n}\n');
  const cAligned = o.aligned && !nk;
  return {
    key,
    params: SG_MATMUL_PARAMS,
    storage: [
      { name: 'A', access: 'read', element: T },
      { name: 'B', access: 'read', element: T },
      ...(o.bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
      { name: 'C', access: 'read_write', element: cAligned ? 'vec4<f32>' : 'f32' },
    ],
    directives: 'enable subgroups;',
    body: L.join('\n'),
  };
}

export const GEMV_PARAMS = new ParamLayout([
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['a_off4', 'u32'],
  ['c_off', 'u32'], ['ldc', 'u32'], ['bias_off', 'u32'], ['bias_sn', 'u32'],
  ...EPILOGUE_PARAMS,
]);

/** Rows of A (batch entries) one GEMV invocation serves: 1 for a single image, else 4. */
export function gemvRows(m: number): 1 | 4 {
  return m === 1 ? 1 : 4;
}

/**
 * Y[m, n] = act(alpha · Σ_k A[m, k] · B[n, k] + beta · bias[n or 0]) for few rows m (a Linear
 * layer at small batch). The weight matrix B is the stream that matters: one output
 * feature per lane, vec4 loads along k. The rows of A are the same for every lane, so each
 * lane loads one vec4 of a block of 8 and the block reaches all lanes by broadcast.
 * Needs K % 4 == 0.
 */
export function gemvKernel(activation: Activation['kind'], bias: boolean, rows: 1 | 4): KernelDef {
  const R = rows;
  const rs = Array.from({ length: R }, (_, i) => i);
  return {
    key: `sg8/gemv${R}/${activation}/${bias ? 'bias' : 'nobias'}`,
    params: GEMV_PARAMS,
    storage: [
      { name: 'A', access: 'read', element: 'vec4<f32>' },
      { name: 'B', access: 'read', element: 'vec4<f32>' },
      ...(bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
      { name: 'C', access: 'read_write', element: 'f32' },
    ],
    directives: 'enable subgroups;',
    body: `${activationWgsl(activation)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  // Every lane runs the loops (broadcast needs the whole subgroup); lanes past N only skip the store.
  let n = min(gid.x, params.N - 1u);
  let m0 = gid.y * ${R}u;
  let K4 = params.K / 4u;
  let brow = n * K4;
${rs.map((i) => `  let arow${i} = params.a_off4 + min(m0 + ${i}u, params.M - 1u) * K4;\n  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  let blocks = K4 / ${SG}u;
  for (var kb = 0u; kb < blocks; kb++) {
    let k8 = kb * ${SG}u;
${rs.map((i) => `    let xv${i} = A[arow${i} + k8 + lane];`).join('\n')}
${Array.from({ length: SG }, (_, s2) => `    { let w = B[brow + k8 + ${s2}u];${rs.map((i) => ` acc${i} = fma(subgroupBroadcast(xv${i}, ${s2}u), w, acc${i});`).join('')} }`).join('\n')}
  }
  for (var k4 = blocks * ${SG}u; k4 < K4; k4++) {
    let w = B[brow + k4];
${rs.map((i) => `    acc${i} = fma(A[arow${i} + k4], w, acc${i});`).join('\n')}
  }
  if (gid.x >= params.N) { return; }
${rs.map((i) => `  if (m0 + ${i}u < params.M) {
    var v = params.alpha * dot(acc${i}, vec4<f32>(1.0));${bias ? `
    v += params.beta * Bias[params.bias_off + n * params.bias_sn];` : ''}
    C[params.c_off + (m0 + ${i}u) * params.ldc + n] = activate(v);
  }`).join('\n')}
}
`,
  };
}

export const GEMV_KN_PARAMS = new ParamLayout([
  ['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['a_off', 'u32'], ['lda', 'u32'],
  ['c_off', 'u32'], ['ldc', 'u32'], ['bias_off', 'u32'], ['bias_sn', 'u32'],
  ...EPILOGUE_PARAMS,
]);

/**
 * Y[m, j] = act(alpha · Σ_k A[m, k] · B[k, j] + beta · bias[j or 0]) for few rows m, with B
 * stored [K, N] (the transposed use of a Linear layer's weights, as in its input
 * gradient): each lane owns a vec4 of consecutive columns, so a row of B is read with one
 * contiguous vec4 load per lane; the few A values of a block of 8 k reach every lane by
 * broadcast. A is read with a row stride (lda), so a slice of its columns can be used.
 * Needs N % 4 == 0.
 */
export function gemvKnKernel(activation: Activation['kind'], bias: boolean, rows: 1 | 4): KernelDef {
  const R = rows;
  const rs = Array.from({ length: R }, (_, i) => i);
  return {
    key: `sg8/gemv_kn${R}/${activation}/${bias ? 'bias' : 'nobias'}`,
    params: GEMV_KN_PARAMS,
    storage: [
      { name: 'A', access: 'read', element: 'f32' },
      { name: 'B', access: 'read', element: 'vec4<f32>' },
      ...(bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
      { name: 'C', access: 'read_write', element: 'f32' },
    ],
    directives: 'enable subgroups;',
    body: `${activationWgsl(activation)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
  let N4 = params.N / 4u;
  let j4 = min(gid.x, N4 - 1u);
  let m0 = gid.y * ${R}u;
${rs.map((i) => `  let arow${i} = params.a_off + min(m0 + ${i}u, params.M - 1u) * params.lda;\n  var acc${i} = vec4<f32>(0.0);`).join('\n')}
  let blocks = params.K / ${SG}u;
  for (var kb = 0u; kb < blocks; kb++) {
    let k8 = kb * ${SG}u;
${rs.map((i) => `    let xv${i} = A[arow${i} + k8 + lane];`).join('\n')}
${Array.from({ length: SG }, (_, s2) => `    { let b = B[(k8 + ${s2}u) * N4 + j4];${rs.map((i) => ` acc${i} = fma(vec4<f32>(subgroupBroadcast(xv${i}, ${s2}u)), b, acc${i});`).join('')} }`).join('\n')}
  }
  for (var k = blocks * ${SG}u; k < params.K; k++) {
    let b = B[k * N4 + j4];
${rs.map((i) => `    acc${i} = fma(vec4<f32>(A[arow${i} + k]), b, acc${i});`).join('\n')}
  }
  if (gid.x >= N4) { return; }
${rs.map((i) => `  if (m0 + ${i}u < params.M) {
    for (var c = 0u; c < 4u; c++) {
      let j = j4 * 4u + c;
      var v = params.alpha * acc${i}[c];${bias ? `
      v += params.beta * Bias[params.bias_off + j * params.bias_sn];` : ''}
      C[params.c_off + (m0 + ${i}u) * params.ldc + j] = activate(v);
    }
  }`).join('\n')}
}
`,
  };
}

export const SG_CONV_PARAMS = new ParamLayout([
  ['groups', 'u32'], ['cin_g', 'u32'], ['H', 'u32'], ['W', 'u32'],
  ['cout_g', 'u32'], ['OH', 'u32'], ['OW', 'u32'], ['KH', 'u32'], ['KW', 'u32'],
  ['stride_h', 'u32'], ['stride_w', 'u32'], ['pad_h', 'u32'], ['pad_w', 'u32'],
  ['dil_h', 'u32'], ['dil_w', 'u32'],
  ['co4', 'u32'], ['K', 'u32'], ['kp', 'u32'], ['sgc', 'u32'],
  // Where outputs land: a plane of y_h × y_w, position (oh, ow) at (oh·y_sh + y_oh, ow·y_sw + y_ow).
  ['y_h', 'u32'], ['y_w', 'u32'], ['y_sh', 'u32'], ['y_sw', 'u32'], ['y_oh', 'u32'], ['y_ow', 'u32'],
  ...EPILOGUE_PARAMS,
]);

/** Output positions per lane in the direct convolution kernel. */
export const SG_CONV_POS = 4;
/** k-steps per iteration (rows of packed weights are padded to a multiple of it). */
export const SG_CONV_KU = 4;

/**
 * Direct convolution as an implicit GEMM over k = (ci, kh, kw) with packed weights
 * Wp[g][k][co4] (vec4 of 4 output channels, k padded to a multiple of 4). A subgroup owns
 * 32 output channels × 32 positions (lane l: positions pos0 + l + 8j); per iteration 4
 * k-steps: one vec4 of weights per lane, broadcast; 16 input values per lane, zero outside
 * the image by unsigned compares; (kh, kw) advanced with selects, no division in the loop.
 * z = image · groups + group.
 */
export function sgConvKernel(activation: Activation['kind'], bias: boolean): KernelDef {
  const R = SG_ROWS;
  const P = SG_CONV_POS;
  const KU = SG_CONV_KU;
  const R4 = R / 4;
  const L: string[] = [activationWgsl(activation)];
  L.push(`@compute @workgroup_size(${SG_WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let sg = li / ${SG}u;
  let sgr = ${NSG}u / params.sgc;
  let co0 = (wg.y * sgr + sg / params.sgc) * ${R}u;
  let pos0 = (wg.x * params.sgc + sg % params.sgc) * ${SG * P}u + lane;
  let g = wg.z % params.groups;
  let img = wg.z / params.groups;
  let OHW = params.OH * params.OW;
  let HW = params.H * params.W;
  let xb = (img * params.groups + g) * params.cin_g * HW;
  let wb = g * params.kp * params.co4;
  let wl = min(co0 / 4u + lane, params.co4 - 1u);`);
  for (let j = 0; j < P; j++) {
    L.push(`  let q${j} = min(pos0 + ${j * SG}u, OHW - 1u);
  let ih${j} = (q${j} / params.OW) * params.stride_h - params.pad_h;
  let iw${j} = (q${j} % params.OW) * params.stride_w - params.pad_w;
  let xo${j} = xb + ih${j} * params.W + iw${j};`);
  }
  L.push(`  var acc: array<array<f32, ${P}>, ${R}>;
  var khd = 0u; var kwd = 0u; var kofs = 0u;
  let kw_end = params.KW * params.dil_w;
  let kh_end = params.KH * params.dil_h;
  let row_step = params.W * params.dil_h - kw_end;
  let chan_step = HW - params.KH * params.W * params.dil_h;
  for (var k0 = 0u; k0 < params.K; k0 += ${KU}u) {`);
  for (let kk = 0; kk < KU; kk++) {
    L.push(`    let kin${kk} = k0 + ${kk}u < params.K;
    let wv${kk} = Wp[wb + (k0 + ${kk}u) * params.co4 + wl];`);
    for (let j = 0; j < P; j++) {
      // Coordinates left of / above the image wrap around in u32 and fail the `<` tests.
      L.push(`    let ok${j}_${kk} = kin${kk} && (ih${j} + khd < params.H) && (iw${j} + kwd < params.W);
    let x${j}_${kk} = select(0.0, X[select(0u, xo${j} + kofs, ok${j}_${kk})], ok${j}_${kk});`);
    }
    L.push(`    kwd += params.dil_w; kofs += params.dil_w;
    { let ww = kwd == kw_end; kwd = select(kwd, 0u, ww); khd = select(khd, khd + params.dil_h, ww); kofs = select(kofs, kofs + row_step, ww);
      let wh = khd == kh_end; khd = select(khd, 0u, wh); kofs = select(kofs, kofs + chan_step, wh); }`);
  }
  for (let grp = 0; grp < R4; grp++) {
    L.push('    {');
    for (let kk = 0; kk < KU; kk++) L.push(`      let w${kk} = subgroupBroadcast(wv${kk}, ${grp}u);`);
    for (let c = 0; c < 4; c++) {
      for (let j = 0; j < P; j++) {
        let e = `acc[${grp * 4 + c}][${j}]`;
        for (let kk = 0; kk < KU; kk++) e = `fma(w${kk}[${c}], x${j}_${kk}, ${e})`;
        L.push(`      acc[${grp * 4 + c}][${j}] = ${e};`);
      }
    }
    L.push('    }');
  }
  L.push(`  }
  var outv: array<f32, ${R * P}>;
  ${Array.from({ length: R * P }, (_, i) => `outv[${i}] = acc[${Math.floor(i / P)}][${i % P}];`).join(' ')}
  let YHW = params.y_h * params.y_w;
  let yb = (img * params.groups + g) * params.cout_g * YHW;`);
  for (let j = 0; j < P; j++) {
    L.push(`  let yo${j} = ((q${j} / params.OW) * params.y_sh + params.y_oh) * params.y_w + (q${j} % params.OW) * params.y_sw + params.y_ow;`);
  }
  L.push(`  for (var r = 0u; r < ${R}u; r++) {
    let co = co0 + r;
    if (co >= params.cout_g) { continue; }
    let b = ${bias ? 'params.beta * Bias[g * params.cout_g + co]' : '0.0'};
    let o = yb + co * YHW;`);
  for (let j = 0; j < P; j++) {
    L.push(`    if (pos0 + ${j * SG}u < OHW) { Y[o + yo${j}] = activate(params.alpha * outv[r * ${P}u + ${j}u] + b); }`);
  }
  L.push('  }\n}\n');
  return {
    key: `sg8/conv/${activation}/${bias ? 'bias' : 'nobias'}`,
    params: SG_CONV_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Wp', access: 'read', element: 'vec4<f32>' },
      ...(bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    directives: 'enable subgroups;',
    body: L.join('\n'),
  };
}

export const PACK_CONV_PARAMS = new ParamLayout([
  ['n', 'u32'], ['groups', 'u32'], ['cout_g', 'u32'], ['K', 'u32'], ['kp', 'u32'], ['co4', 'u32'],
]);

/** OIHW weights → the direct kernel's layout Wp[g][k][co4][4] (zero-padded), on the GPU. */
export function packConvWeightsKernel(): KernelDef {
  return {
    key: 'sg8/pack_conv_weights',
    params: PACK_CONV_PARAMS,
    storage: [
      { name: 'W', access: 'read', element: 'f32' },
      { name: 'Wp', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  let lane = i % 4u;
  let c4 = (i / 4u) % params.co4;
  let k = (i / (4u * params.co4)) % params.kp;
  let g = i / (4u * params.co4 * params.kp);
  let co = c4 * 4u + lane;
  let ok = co < params.cout_g && k < params.K;
  Wp[i] = select(0.0, W[select(0u, ((g * params.cout_g + co) * params.K) + k, ok)], ok);
}
`,
  };
}

/** Winograd F(m×m, 3×3) transform matrices (Lavin & Gray). */
const WINO: Record<2 | 4, { BT: number[][]; G: number[][]; AT: number[][] }> = {
  2: {
    BT: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
    G: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    AT: [[1, 1, 1, 0], [0, 1, -1, -1]],
  },
  4: {
    BT: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
    G: [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    AT: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
  },
};

function lit(c: number): string {
  const s = Math.abs(c).toPrecision(17).replace(/0+$/, '').replace(/\.$/, '.0');
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
}

/** Σ_k row[k]·terms[k] with constant coefficients, zero terms dropped. */
function linear(row: number[], terms: string[]): string {
  const parts: string[] = [];
  row.forEach((c, k) => {
    if (!c) return;
    if (c === 1) parts.push(`+ ${terms[k]}`);
    else if (c === -1) parts.push(`- ${terms[k]}`);
    else parts.push(`${c < 0 ? '-' : '+'} ${lit(c)} * ${terms[k]}`);
  });
  if (!parts.length) return '0.0';
  const s = parts.join(' ');
  return s.startsWith('+ ') ? s.slice(2) : s;
}

export const WINOGRAD_PARAMS = new ParamLayout([
  ['N', 'u32'], ['C', 'u32'], ['H', 'u32'], ['W', 'u32'], ['OH', 'u32'], ['OW', 'u32'],
  ['pad_h', 'u32'], ['pad_w', 'u32'], ['TH', 'u32'], ['TW', 'u32'], ['T', 'u32'], ['Tpad', 'u32'], ['Cpad', 'u32'],
  ...EPILOGUE_PARAMS,
]);

/** V[ξ][c][t] = (Bᵀ d B)[ξ] for every input tile d; zero rows for c ≥ C and columns t ≥ T. */
export function winogradInputKernel(m: 2 | 4): KernelDef {
  const { BT } = WINO[m];
  const a = m + 2;
  const L: string[] = [`@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x; let c = gid.y;
  if (t >= params.Tpad || c >= params.Cpad) { return; }
  let valid = t < params.T && c < params.C;
  let tw = t % params.TW; let th = (t / params.TW) % params.TH; let n = min(t / (params.TW * params.TH), params.N - 1u);
  let ih0 = th * ${m}u - params.pad_h; let iw0 = tw * ${m}u - params.pad_w;
  let xb = (n * params.C + min(c, params.C - 1u)) * params.H * params.W;`];
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < a; j++) {
      const ok = `valid && ih0 + ${i}u < params.H && iw0 + ${j}u < params.W`;
      L.push(`  let d${i}_${j} = select(0.0, X[select(0u, xb + (ih0 + ${i}u) * params.W + iw0 + ${j}u, ${ok})], ${ok});`);
    }
  }
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) L.push(`  let t${i}_${j} = ${linear(BT[i], Array.from({ length: a }, (_, k) => `d${k}_${j}`))};`);
  L.push('  let CT = params.Cpad * params.Tpad; let o = c * params.Tpad + t;');
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) L.push(`  V[${i * a + j}u * CT + o] = ${linear(BT[j], Array.from({ length: a }, (_, k) => `t${i}_${k}`))};`);
  L.push('}\n');
  return {
    key: `sg8/winograd${m}/input`,
    params: WINOGRAD_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'V', access: 'read_write', element: 'f32' },
    ],
    body: L.join('\n'),
  };
}

/** Y = act(alpha · Aᵀ M A + beta · bias) per output tile. */
export function winogradOutputKernel(m: 2 | 4, activation: Activation['kind'], bias: boolean): KernelDef {
  const { AT } = WINO[m];
  const a = m + 2;
  const L: string[] = [activationWgsl(activation), `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x; let c = gid.y;
  if (t >= params.T || c >= params.C) { return; }
  let tw = t % params.TW; let th = (t / params.TW) % params.TH; let n = t / (params.TW * params.TH);
  let CT = params.C * params.Tpad; let base = c * params.Tpad + t;`];
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) L.push(`  let m${i}_${j} = Mx[${i * a + j}u * CT + base];`);
  for (let i = 0; i < m; i++) for (let j = 0; j < a; j++) L.push(`  let t${i}_${j} = ${linear(AT[i], Array.from({ length: a }, (_, k) => `m${k}_${j}`))};`);
  L.push(`  let b = ${bias ? 'params.beta * Bias[c]' : '0.0'};
  let oh0 = th * ${m}u; let ow0 = tw * ${m}u;
  let yb = (n * params.C + c) * params.OH * params.OW;`);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < m; j++) {
      L.push(`  if (oh0 + ${i}u < params.OH && ow0 + ${j}u < params.OW) { Y[yb + (oh0 + ${i}u) * params.OW + ow0 + ${j}u] = activate(params.alpha * (${linear(AT[j], Array.from({ length: a }, (_, k) => `t${i}_${k}`))}) + b); }`);
    }
  }
  L.push('}\n');
  return {
    key: `sg8/winograd${m}/output/${activation}/${bias ? 'bias' : 'nobias'}`,
    params: WINOGRAD_PARAMS,
    storage: [
      { name: 'Mx', access: 'read', element: 'f32' },
      ...(bias ? [{ name: 'Bias', access: 'read' as const, element: 'f32' }] : []),
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: L.join('\n'),
  };
}

export const WINOGRAD_WEIGHT_PARAMS = new ParamLayout([['cout', 'u32'], ['cin', 'u32'], ['cpad', 'u32']]);

/** U[ξ][co][ci] = (G w Gᵀ)[ξ] per 3×3 filter, ci padded with zeros to Cpad; on the GPU. */
export function winogradWeightKernel(m: 2 | 4): KernelDef {
  const { G } = WINO[m];
  const a = m + 2;
  const L: string[] = [`@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ci = gid.x; let co = gid.y;
  if (ci >= params.cpad || co >= params.cout) { return; }
  let ok = ci < params.cin;
  let o = (co * params.cin + min(ci, params.cin - 1u)) * 9u;`];
  for (let k = 0; k < 9; k++) L.push(`  let w${k} = select(0.0, W[o + ${k}u], ok);`);
  for (let i = 0; i < a; i++) for (let j = 0; j < 3; j++) L.push(`  let g${i}_${j} = ${linear(G[i], [0, 1, 2].map((k) => `w${k * 3 + j}`))};`);
  L.push('  let stride = params.cout * params.cpad; let base = co * params.cpad + ci;');
  for (let i = 0; i < a; i++) for (let j = 0; j < a; j++) L.push(`  U[${i * a + j}u * stride + base] = ${linear(G[j], [0, 1, 2].map((k) => `g${i}_${k}`))};`);
  L.push('}\n');
  return {
    key: `sg8/winograd${m}/weights`,
    params: WINOGRAD_WEIGHT_PARAMS,
    storage: [
      { name: 'W', access: 'read', element: 'f32' },
      { name: 'U', access: 'read_write', element: 'f32' },
    ],
    body: L.join('\n'),
  };
}
