#!/usr/bin/python3
"""Golden outputs of Opti-CAM from hanwei0912/OptiCAM (OPTI) for test/cam-opticam.test.ts.

CI never runs this script: it needs OPTI's util.py and pytorch-grad-cam (OPTI imports
`activations_and_gradients` from it), which camgpu never vendors or copies.

    # a checkout of hanwei0912/OptiCAM (for util.py) in /tmp/opti, and of
    # jacobgil/pytorch-grad-cam in /tmp/pgc, however you obtain them
    PYTHONPATH=/tmp/opti:/tmp/pgc/pytorch_grad_cam:/tmp/pgc_stubs /usr/bin/python3 \\
        tools/gen_opticam_fixtures.py --commit $(git -C /tmp/opti rev-parse HEAD)

(`/tmp/pgc_stubs` holds the `ttach.py` stand-in described in tools/gen_cam_fixtures.py; OPTI's
util.py also imports `pdb` and `torchvision`, both present.)

OPTI's generate_opticam.py defaults: Basic_OptCAM(max_iter=50, learning_rate=0.1,
name_f='logit_predict', name_loss='plain', name_norm='max_min', name_mode='resnet') on
nn.Sequential(Preprocessing_Layer(mean, std), model) fed [0, 1] pixels, one image per call
(OPTI's early stop looks at the loss summed over its batch; per image it is each image's own),
labels = the part-1 fixture's targets. Models: the narrowed torchvision ResNet-18 (128x128) and
VGG-16 (224x224) with OPTI's own Preprocessing_Layer (ImageNet mean/std), and the two Fashion
models with a one-channel stand-in for it (OPTI's class indexes three channels), (p - mean)/std
with the model card's values. The pixels are the fixture's model input mapped back:
p = x * std + mean.

Writes test/fixtures/cam/<model>/opticam.json, OPTI-map.npy ([N, H, W]: the map OPTI returns)
and OPTI-loss.npy ([N, 50]: the loss of every iteration OPTI ran, NaN after an early stop).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402
import gen_cam_fixtures_sweeps as gsw  # noqa: E402

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
MODELS = ["resnet18-w8", "vgg16-w8", "fashion-vgg", "fashion-resnet"]
ITERS, LR = 50, 0.1


class OneChannelPreprocessing(torch.nn.Module):
    """(p - mean)/std for one channel: what OPTI's Preprocessing_Layer does for three."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def gen(name, commit):
    import util as opti
    cfg = gcf.MODELS[name]
    model, x_np, layer, _checks = gsw.build(name, cfg, print)
    if cfg.get("card"):
        card = json.load(open(os.path.join(REPO, cfg["card"])))
        mean, std = [card["preprocessing"]["mean"]], [card["preprocessing"]["std"]]
        pre = OneChannelPreprocessing(mean[0], std[0])
    else:
        mean, std = IMAGENET
        pre = opti.Preprocessing_Layer(mean, std)
    wrapped = torch.nn.Sequential(pre, model).eval()
    target = wrapped[1].get_submodule(layer)
    C = x_np.shape[1]
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    pixels = (x_np * s + m).astype(np.float32)
    targets = list(cfg["targets"])
    maps, curves = [], []
    for n in range(x_np.shape[0]):
        cam = opti.Basic_OptCAM(wrapped, "cpu", max_iter=ITERS, learning_rate=LR, target_layer=[target],
                                name_f="logit_predict", name_loss="plain", name_norm="max_min", name_mode="resnet")
        losses = []
        orig = cam.get_loss

        def get_loss(new_images, predict_labels, f_images, orig=orig, losses=losses):
            v = orig(new_images, predict_labels, f_images)
            losses.append(float(v.detach()))
            return v
        cam.get_loss = get_loss
        sal, _ = cam(torch.from_numpy(pixels[n:n + 1]), torch.tensor([targets[n]]))
        maps.append(sal.detach().numpy().reshape(x_np.shape[2], x_np.shape[3]))
        curve = np.full(ITERS, np.nan)
        curve[:len(losses)] = losses
        curves.append(curve)
        print("  image %d: %d iterations, loss %.5g -> %.5g" % (n, len(losses), losses[0], losses[-1]), flush=True)
    d = os.path.join(gcf.OUT, name)
    files = {
        "OPTI-map.npy": {"shape": gcf.save(os.path.join(d, "OPTI-map.npy"), np.stack(maps)), "description": "OPTI Basic_OptCAM's returned map (norm_saliency_map), [N, H, W]"},
        "OPTI-loss.npy": {"shape": gcf.save(os.path.join(d, "OPTI-loss.npy"), np.stack(curves)), "description": "the loss of each iteration OPTI ran (before its Adam step); NaN after an early stop, [N, 50]"},
    }
    meta = {"schema": "camgpu-opticam-fixture/1", "opti": {"repo": "hanwei0912/OptiCAM", "commit": commit},
            "layer": layer, "targets": targets, "input": json.load(open(os.path.join(d, "meta.json")))["input"]["file"],
            "pixels": {"mean": mean, "std": std, "how": "p = x * std + mean per channel, fed to Sequential(preprocessing, model)"},
            "options": {"max_iter": ITERS, "learning_rate": LR, "name_f": "logit_predict", "name_loss": "plain", "name_norm": "max_min", "name_mode": "resnet"},
            "iterationsRun": [int(np.sum(~np.isnan(c))) for c in curves], "channels": C, "files": files}
    with open(os.path.join(d, "opticam.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    for name in a.models.split(","):
        print(name, flush=True)
        gen(name, a.commit)
