#!/usr/bin/python3
"""A float64 reference of Pixab-CAM (seed 002 section 4, eq. 7-8; SPEC section 1) for
test/cam-pixab.test.ts. No public implementation exists; this one is written from SPEC's
row, independently of camgpu's kernels, and run in float64 with PyTorch on the CPU.

    /usr/bin/python3 tools/gen_pixab_fixtures.py

For both bundled Fashion models (the part-1 CAM fixtures' input, targets and card layer):
the torch module rebuilt from the ONNX file (tools/onnx_torch.py) in float64; a forward hook
on the layer replaces its output by the ablated activations, one batch per image:
  * Y = y_c(x) (logit), Y0 = y_c with the whole layer zeroed;
  * for every box b: 1x1, 1x2, 2x1, 2x2 at every top-left (i, j), clipped to the map:
    Y_b = y_c with the box zeroed in all channels, P_b = y_c with all but the box zeroed;
  * p_b = ((Y - Y_b)/Y) * ((P_b - Y0)/Y0); p(i, j) = mean of p_b over the boxes covering (i, j);
  * L = u(relu(p)) with u(M) = (M - min)/(max - min + 1e-7).
Writes test/fixtures/cam/<model>/pixab.json, PIXAB-raw.npy (p), PIXAB-lowres.npy (L) and
PIXAB-scores.npy ([N, 1 + 2B]: Y0, then Y_b for every box, then P_b, boxes ordered by kind,
then row, then column).
"""

import json
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402
import onnx_torch  # noqa: E402

BOXES = [(1, 1), (1, 2), (2, 1), (2, 2)]
MODELS = ["fashion-vgg", "fashion-resnet"]


def boxes(h, w):
    return [(i, min(h, i + bh), j, min(w, j + bw)) for bh, bw in BOXES for i in range(h) for j in range(w)]


def gen(name):
    cfg = gcf.MODELS[name]
    d = os.path.join(gcf.OUT, name)
    meta1 = json.load(open(os.path.join(d, "meta.json")))
    card = json.load(open(os.path.join(REPO, cfg["card"])))
    layer = card["targetLayer"]["module"]
    model = onnx_torch.load(os.path.join(REPO, cfg["onnx"])).eval().double()
    x = torch.from_numpy(np.load(os.path.join(REPO, meta1["input"]["file"]))).double()
    targets = list(cfg["targets"])
    N = x.shape[0]
    state = {"replace": None, "acts": None}

    def hook(_m, _i, out):
        state["acts"] = out.detach().clone()
        return state["replace"] if state["replace"] is not None else out

    handle = model.get_submodule(layer).register_forward_hook(hook)
    raws, lows, scores = [], [], []
    try:
        for n in range(N):
            xi = x[n:n + 1]
            c = targets[n]
            with torch.no_grad():
                state["replace"] = None
                y = model(xi)[0, c].item()
                a = state["acts"][0]  # [K, h, w]
                K, h, w = a.shape
                bx = boxes(h, w)
                keep = [torch.zeros(h, w, dtype=torch.float64)]  # the whole layer zeroed
                for y0, y1, x0, x1 in bx:
                    k = torch.ones(h, w, dtype=torch.float64)
                    k[y0:y1, x0:x1] = 0
                    keep.append(k)
                for y0, y1, x0, x1 in bx:
                    k = torch.zeros(h, w, dtype=torch.float64)
                    k[y0:y1, x0:x1] = 1
                    keep.append(k)
                keep = torch.stack(keep)[:, None]  # [R, 1, h, w]
                s = []
                for r0 in range(0, keep.shape[0], 256):
                    ablated = a[None] * keep[r0:r0 + 256]
                    state["replace"] = ablated
                    s.append(model(xi.expand(ablated.shape[0], *xi.shape[1:]))[:, c])
                s = torch.cat(s).numpy()
            B = len(bx)
            y0s, dele, pres = s[0], s[1:1 + B], s[1 + B:]
            pb = ((y - dele) / y) * ((pres - y0s) / y0s)
            num = np.zeros((h, w))
            cnt = np.zeros((h, w))
            for (r0, r1, c0, c1), v in zip(bx, pb):
                num[r0:r1, c0:c1] += v
                cnt[r0:r1, c0:c1] += 1
            p = num / cnt
            rl = np.maximum(p, 0)
            L = (rl - rl.min()) / (rl.max() - rl.min() + 1e-7)
            raws.append(p)
            lows.append(L)
            scores.append(s)
    finally:
        handle.remove()
    files = {}
    for fn, arr, desc in [
        ("PIXAB-raw.npy", np.stack(raws), "p: the mean of p_b over the boxes covering each position, before relu, [N, h, w]"),
        ("PIXAB-lowres.npy", np.stack(lows), "L = u(relu(p)) at the layer's resolution, [N, h, w]"),
        ("PIXAB-scores.npy", np.stack(scores), "y_c of every row: the whole layer zeroed, then each box deleted, then each box alone, [N, 1 + 2B]"),
    ]:
        files[fn] = {"shape": gcf.save(os.path.join(d, fn), arr), "description": desc}
    meta = {"schema": "camgpu-pixab-fixture/1", "layer": layer, "targets": targets, "input": meta1["input"]["file"],
            "score": "logit", "boxes": [list(b) for b in BOXES], "precision": "float64 (torch module .double())",
            "files": files}
    with open(os.path.join(d, "pixab.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    print(name, layer, "boxes", len(boxes(h, w)), "max |p|", float(np.abs(np.stack(raws)).max()), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    for m in MODELS:
        gen(m)
