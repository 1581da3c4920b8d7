import type { Sym } from '../../src/ops/tape.js';
import type { Net } from '../../src/train/net.js';
import type { Architecture } from '../../src/train/session.js';

/**
 * A small ResNet-style network for 56×56 grayscale inputs, laid out and named as
 * torchvision's ResNet (conv1 / bn1 / relu / maxpool stem, `layerK.B` BasicBlocks with
 * `downsample` shortcuts, global average pooling, `fc`). The stem conv has stride 2 (see
 * vgg.ts for why that loses nothing on 2×-upscaled images).
 *
 *   conv1 1→24 s2 56→28, bn1, relu, maxpool 28→14
 *   layer1.0  BasicBlock 24→24      14×14
 *   layer2.0  BasicBlock 24→48, s2  7×7 (1×1 s2 conv + BN shortcut) — the last conv block, the CAM target
 *   avgpool (global), fc 48→10
 */
export const RESNET_WIDTHS = [24, 24, 48] as const;

function basicBlock(net: Net, x: Sym, path: string, out: number, stride: number): Sym {
  let y = net.batchNorm(net.conv(x, `${path}.conv1`, { out, stride, bias: false }), `${path}.bn1`);
  y = net.relu(y, `${path}.relu`);
  y = net.batchNorm(net.conv(y, `${path}.conv2`, { out, bias: false }), `${path}.bn2`);
  const shortcut = stride !== 1 || x.shape[1] !== out
    ? net.batchNorm(net.conv(x, `${path}.downsample.0`, { out, kernel: 1, stride, pad: 0, bias: false }), `${path}.downsample.1`)
    : x;
  // torchvision's BasicBlock calls its one ReLU module twice; torch.onnx scopes the second call relu_1.
  return net.relu(net.add(y, shortcut, path), `${path}.relu_1`);
}

export const resnet: Architecture = {
  name: 'fashion-resnet',
  inputSize: 56,
  channels: 1,
  classes: 10,
  targetLayer: 'layer2',
  build(net: Net, input: Sym): Sym {
    const [w0, w1, w2] = RESNET_WIDTHS;
    let x = net.batchNorm(net.conv(input, 'conv1', { out: w0, stride: 2, bias: false }), 'bn1');
    x = net.maxPool(net.relu(x, 'relu'), 'maxpool');
    x = basicBlock(net, x, 'layer1.0', w1, 1);
    x = basicBlock(net, x, 'layer2.0', w2, 2);
    x = net.flatten(net.globalAvgPool(x, 'avgpool'));
    return net.linear(x, 'fc', 10, { output: 'logits' });
  },
};
