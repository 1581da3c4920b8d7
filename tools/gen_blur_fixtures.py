#!/usr/bin/python3
"""Golden blurs for camgpu's insertion/deletion substrates (test/metrics-blocks.test.ts).

CI never runs this script. Needs Debian's python3-torch, python3-torchvision, python3-scipy:

    /usr/bin/python3 tools/gen_blur_fixtures.py

Writes test/fixtures/metrics/blur/:
  x.npy            float32 [2, 3, 20, 24], seeded normal values (numpy seed 7)
  torchvision.npy  torchvision.transforms.functional.gaussian_blur(x, [11, 11], [5, 5])
                   (reflect padding; SPEC's substrate for the polycam preset)
  rise.npy         eclique/RISE's evaluation substrate: the 11x11 kernel from
                   scipy.ndimage.gaussian_filter of a Dirac (sigma 5, scipy's defaults), as a
                   per-channel conv2d with zero padding 5 (their notebook's `blur`); the kernel
                   construction is re-derived here from scipy, RISE's code is not imported.
  rise-kernel.npy  that 11x11 kernel.
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from scipy.ndimage import gaussian_filter

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test", "fixtures", "metrics", "blur")


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 20, 24)).astype(np.float32)
    tv = TF.gaussian_blur(torch.from_numpy(x), kernel_size=[11, 11], sigma=[5, 5]).numpy()
    dirac = np.zeros((11, 11))
    dirac[5, 5] = 1
    k = gaussian_filter(dirac, 5)
    weight = torch.zeros(3, 1, 11, 11, dtype=torch.float32)
    for c in range(3):
        weight[c, 0] = torch.from_numpy(k.astype(np.float32))
    rise = F.conv2d(torch.from_numpy(x), weight, padding=5, groups=3).numpy()
    np.save(os.path.join(OUT, "x.npy"), x)
    np.save(os.path.join(OUT, "torchvision.npy"), tv.astype(np.float32))
    np.save(os.path.join(OUT, "rise.npy"), rise.astype(np.float32))
    np.save(os.path.join(OUT, "rise-kernel.npy"), k.astype(np.float64))
    print("torch", torch.__version__, "kernel sum", k.sum())


if __name__ == "__main__":
    main()
