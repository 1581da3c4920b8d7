import type { Sym } from '../../src/ops/tape.js';
import type { Net } from '../../src/train/net.js';
import type { Architecture } from '../../src/train/session.js';

/**
 * A small VGG-style network for 56×56 grayscale inputs (Fashion-MNIST upscaled 2×), laid
 * out as torchvision's VGG (`features` Sequential of 3×3 convs, ReLUs and max pools, then a
 * `classifier` of dense layers), no batch normalization. The first conv has stride 2: the
 * upscaled image holds no detail finer than the original 28×28 grid, so it loses nothing
 * and keeps every later map at 28×28 or below (lavapipe time scales with activation size).
 *
 *   features.0  conv 1→16, s2  56→28   features.2  max pool  28→14
 *   features.3  conv 16→32     14      features.5  conv 32→32  14   features.7 max pool 14→7
 *   features.8  conv 32→64     7       (the last conv block: 64×7×7, the CAM target)
 *   classifier.0  dense 3136→128, classifier.1 ReLU, classifier.2 dense 128→10
 */
export const VGG_WIDTHS = [16, 32, 32, 64] as const;

export const vgg: Architecture = {
  name: 'fashion-vgg',
  inputSize: 56,
  channels: 1,
  classes: 10,
  targetLayer: 'features.9',
  build(net: Net, input: Sym): Sym {
    const [w0, w1, w2, w3] = VGG_WIDTHS;
    let x = net.relu(net.conv(input, 'features.0', { out: w0, stride: 2 }), 'features.1');
    x = net.maxPool(x, 'features.2');
    x = net.relu(net.conv(x, 'features.3', { out: w1 }), 'features.4');
    x = net.relu(net.conv(x, 'features.5', { out: w2 }), 'features.6');
    x = net.maxPool(x, 'features.7');
    x = net.relu(net.conv(x, 'features.8', { out: w3 }), 'features.9');
    x = net.flatten(x);
    x = net.relu(net.linear(x, 'classifier.0', 128, { hidden: true }), 'classifier.1');
    return net.linear(x, 'classifier.2', 10, { output: 'logits' });
  },
};
