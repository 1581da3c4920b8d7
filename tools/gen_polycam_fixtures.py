#!/usr/bin/python3
"""Golden outputs of Poly-CAM (PCAM+, PCAM-, PCAM+-) from aenglebert/polycam (POLY) for
camgpu's test/cam-polycam.test.ts.

CI never runs this script: it needs POLY, which camgpu never vendors or copies.

    # a checkout of aenglebert/polycam in /tmp/poly (or `git archive HEAD polycam` of a copy)
    PYTHONPATH=/tmp/poly /usr/bin/python3 tools/gen_polycam_fixtures.py --commit $(git -C /tmp/poly rev-parse HEAD)

Per model (the part-1 CAM fixture's model, committed input and explicit targets; the torch
module is rebuilt as tools/gen_cam_fixtures.py does and checked against its ONNX file), for
each POLY class PCAMp / PCAMm / PCAMpm, one image at a time (POLY explains one image per call)
with class_idx = targets[i], target_layer_list = the model's list below, lnorm=True:

  * mode "percentile": POLY exactly as published (its `normalize`: (M - p0.1)/max(p99.9, 1e-12)
    clipped to [0, 1], of the activations before upsampling them into masks, and of every map
    before upsampling it to the input);
  * mode "minmax": camgpu's default (SPEC): masks u(up(A_k)) and maps u(up(u(P_l))). POLY's
    code runs unchanged except two module attributes: `_PolyCAM.normalize` becomes the
    min-max u() (eps 1e-8), and the `F` its modules call `interpolate` through returns, for a
    resize to the input size, the resized maps min-max normalized again. u(up(u(A))) = u(up(A))
    since u is invariant to affine maps; no other call is touched.

Also PCAMpm with lnorm=False (the LNorm ablation) in mode minmax on the Fashion models, and
what POLY's own automatic layer search (utils.find_layer_list) returns for each model.
Independent checks: POLY's weights of the deepest layer are recomputed by direct forwards
(masked inputs, softmax) and its score hook's baseline against softmax(model(x)).
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402
import gen_cam_fixtures_sweeps as gsw  # noqa: E402

OUT = gcf.OUT
SCHEMA = "camgpu-polycam-fixture/1"

# Layer lists (shallow to deep); every one drops the spatial size at each step.
LAYERS = {
    "resnet18-w8": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "vgg16-w8": ["features.3", "features.8", "features.15", "features.22", "features.29"],
    "fashion-vgg": ["features.1", "features.6", "features.9"],
    "fashion-resnet": ["relu", "layer1", "layer2"],
}
# Every layer's map is kept for the 56x56 Fashion models (N*L*H*W floats); only the final map elsewhere.
ALL_LAYERS = {"fashion-vgg", "fashion-resnet"}
VARIANTS = {"PCAMp": "plus", "PCAMm": "minus", "PCAMpm": "plusminus"}


def log(*a):
    print(*a, flush=True)


def minmax(t, eps=1e-8):
    flat = t.flatten(-2)
    mn = flat.min(-1).values[..., None, None]
    mx = flat.max(-1).values[..., None, None]
    return (t - mn) / (mx - mn + eps)


class MinmaxF:
    """torch.nn.functional, except that resizing a tensor `normalize` returned, or 1 minus one
    (PCAM-'s reversed masks), is min-max normalized again after resizing: POLY resizes only
    those into masks and returned maps; LNorm's and the multiplication's resizes read other
    tensors. For 1 - m, u(up(1 - u(A))) = 1 - u(up(A)) up to the epsilon."""

    def __init__(self):
        self.normalized = []

    def normalize(self, t, outlier_perc=0.1):
        out = minmax(t)
        self.normalized.append(out)  # kept alive, so ids stay unique
        return out

    def __getattr__(self, name):
        return getattr(F, name)

    def interpolate(self, x, size=None, **kw):
        y = F.interpolate(x, size, **kw)
        if any(x is t or (x.shape == t.shape and torch.allclose(1 - x, t, rtol=0, atol=1e-6)) for t in self.normalized):
            y = minmax(y)
        return y


def run_poly(P, core, cls, model, layers, x1, cls_idx, mode, lnorm):
    """One POLY call on one image; returns (maps shallow->deep [L, H, W], weights per layer)."""
    H, W = x1.shape[-2:]
    saved = (core._PolyCAM.__dict__["normalize"], P.F, core.F)  # the staticmethod object itself
    recorded = {}
    try:
        if mode == "minmax":
            patched = MinmaxF()
            core._PolyCAM.normalize = staticmethod(patched.normalize)
            P.F = core.F = patched
        cam = getattr(P, cls)(model, target_layer_list=list(layers), batch_size=32, lnorm=lnorm)
        orig = cam.get_weights

        def get_weights(image_input, layer):
            w = orig(image_input, layer)
            recorded[layer] = w.detach().reshape(-1).numpy().copy()
            return w
        cam.get_weights = get_weights
        with torch.no_grad():
            maps = cam(x1, class_idx=cls_idx)
    finally:
        core._PolyCAM.normalize, P.F, core.F = saved
    # POLY returns the maps deepest first; reverse to the layer list's order.
    out = np.stack([m.detach().reshape(H, W).numpy() for m in reversed(maps)])
    return out, [recorded[l] for l in layers]


def deepest_weights_check(model, layer, x1, cls_idx, w_poly, variant):
    """The deepest layer's weights recomputed by direct forwards (POLY's masks: its
    percentile normalization at layer resolution, bilinear upsampling)."""
    acts = {}
    h = model.get_submodule(layer).register_forward_hook(lambda _m, _i, o: acts.__setitem__("a", o.detach()))
    with torch.no_grad():
        base = torch.softmax(model(x1), 1)[0, cls_idx].item()
    h.remove()
    a = acts["a"][0]  # [K, h, w]
    flat = a.flatten(-2).numpy()
    lo = np.percentile(flat, 0.1, axis=-1)[:, None, None]
    hi = np.percentile(flat, 99.9, axis=-1)[:, None, None]
    m = np.clip((a.numpy() - lo) / np.maximum(hi, 1e-12), 0, 1)
    m = F.interpolate(torch.from_numpy(m.astype(np.float32))[None], x1.shape[-2:], mode="bilinear")[0]
    with torch.no_grad():
        plus = torch.softmax(model(x1 * m[:, None]), 1)[:, cls_idx].numpy()
        minus = torch.softmax(model(x1 * (1 - m[:, None])), 1)[:, cls_idx].numpy()
    want = {"plus": plus, "minus": np.maximum(base - minus, 0), "plusminus": np.maximum(plus + base - minus, 0)}[variant]
    err = float(np.max(np.abs(want - w_poly)) / max(1e-30, float(np.max(np.abs(want)))))
    if err > 1e-4:
        raise RuntimeError("POLY %s weights of %s differ from direct forwards by %.3g" % (variant, layer, err))
    return err


def gen_model(name, commit):
    import polycam.core as core
    import polycam.polycam as P
    import polycam.utils as U
    cfg = gcf.MODELS[name]
    model, x_np, _layer, checks = gsw.build(name, cfg, log)
    d = os.path.join(OUT, name)
    meta1 = json.load(open(os.path.join(d, "meta.json")))
    if not np.array_equal(np.load(os.path.join(REPO, meta1["input"]["file"])), x_np):
        raise RuntimeError("%s: rebuilt input differs from the committed one" % name)
    x = torch.from_numpy(x_np)
    N, C, H, W = x.shape
    targets = list(cfg["targets"])
    layers = LAYERS[name]
    with torch.no_grad():
        logits = model(x)
    L1 = np.load(os.path.join(d, "logits.npy"))
    if float(np.max(np.abs(logits.numpy() - L1))) > 1e-4 * max(1.0, float(np.max(np.abs(L1)))):
        raise RuntimeError("%s: logits differ from the part-1 fixture" % name)
    files, entries = {}, {}

    def put(fn, arr, desc):
        shape = gcf.save(os.path.join(d, fn), arr)
        files[fn] = {"shape": shape, "description": desc}
        return fn

    runs = [(cls, mode, True) for cls in VARIANTS for mode in ("minmax", "percentile")]
    if name in ALL_LAYERS:
        runs.append(("PCAMpm", "minmax", False))
    for cls, mode, lnorm in runs:
        tag = "POLY-%s-%s%s" % (cls, mode, "" if lnorm else "-nolnorm")
        log("   %s" % tag)
        maps, weights = [], []
        for i in range(N):
            m, w = run_poly(P, core, cls, model, layers, x[i:i + 1], targets[i], mode, lnorm)
            if mode == "percentile" and lnorm:
                checks["%s deepest weights vs direct forwards, image %d" % (tag, i)] = deepest_weights_check(model, layers[-1], x[i:i + 1], targets[i], w[-1], VARIANTS[cls])
            maps.append(m)
            weights.append(np.concatenate(w))
        maps = np.stack(maps)  # [N, L, H, W]
        e = {"class": cls, "variant": VARIANTS[cls], "mode": mode, "lnorm": lnorm,
             "final": put(tag + ".npy", maps[:, 0], "POLY %s final map (the shallowest layer's, cam_list[-1]), [N, H, W]" % cls),
             "weights": put(tag + "-weights.npy", np.stack(weights),
                            "POLY get_weights of every layer in list order, concatenated over channels, [N, sum K_l]"),
             "layers": None}
        if name in ALL_LAYERS:
            e["layers"] = put(tag + "-layers.npy", maps, "POLY's map at every layer, in the layer list's order (cam_list reversed), [N, L, H, W]")
        entries[tag] = e
    auto = U.find_layer_list(model, input_shape=(C, H, W))
    meta = {
        "schema": SCHEMA,
        "poly": {"commit": commit, "repo": "aenglebert/polycam"},
        "model": meta1["model"] if "model" in meta1 else cfg["onnx"],
        "input": meta1["input"]["file"],
        "targets": targets,
        "layers": layers,
        "polyAutoLayers": auto,
        "batchSize": 32,
        "score": "softmax of the output at class_idx (POLY's score hook on the last named module)",
        "methods": entries,
        "files": files,
        "checks": checks,
    }
    with open(os.path.join(d, "polycam.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    return {"meta": gcf.rel(os.path.join(d, "polycam.json")), "methods": sorted(entries)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--commit", required=True)
    ap.add_argument("--models", default=",".join(LAYERS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    index = {"schema": SCHEMA, "poly": {"commit": a.commit}, "models": {}}
    for name in a.models.split(","):
        log(name)
        index["models"][name] = gen_model(name, a.commit)
    with open(os.path.join(OUT, "polycam.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
