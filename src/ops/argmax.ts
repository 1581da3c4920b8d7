import { grid1d } from '../runtime/kernel.js';
import { ONEHOT_ARGMAX_PARAMS, onehotArgmaxKernel } from '../shaders/argmax.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/** y[i] = one-hot of argmax_c x[i, c] (ties: the first), for x of shape [N, C]. */
export function lowerOnehotArgmax(env: LowerEnv, x: BoundTensor, y: BoundTensor): Lowered {
  const [rows, cols] = x.shape;
  return [{
    kernel: onehotArgmaxKernel(),
    params: ONEHOT_ARGMAX_PARAMS.pack({ rows, cols }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(rows, 64)),
    label: env.label,
    flops: 0,
  }];
}
