#!/usr/bin/python3
"""Golden outputs of pytorch-grad-cam (PGC) for camgpu's CAM methods.

Writes test/fixtures/cam/ (committed).  CI never runs this script: it needs PGC,
which is not a dependency of camgpu and is never vendored or copied into the
repository.  The committed fixtures are what the tests read.

Obtaining PGC
-------------
    git clone https://github.com/jacobgil/pytorch-grad-cam /tmp/pgc
    # or, from a bare mirror:  git --git-dir=MIRROR archive HEAD pytorch_grad_cam setup.py | tar -x -C /tmp/pgc

PGC imports `ttach` (test-time augmentation) at module level, which Debian does not
package.  The fixtures never use augmentation (aug_smooth=False), so when ttach is
missing, put a stand-in module `ttach.py` in some directory OUTSIDE the repository
and add it to PYTHONPATH; it only needs no-op classes `Compose`, `HorizontalFlip`
and `Multiply` whose constructors accept any arguments.  Everything else PGC
imports (numpy, torch, torchvision, cv2, sklearn, scipy, matplotlib, PIL, tqdm) is
in Debian (python3-opencv python3-sklearn python3-scipy python3-matplotlib
python3-tqdm).

Run (Debian's Python; no weights are downloaded, no network is needed):

    PYTHONPATH=/tmp/pgc:/tmp/pgc_stubs /usr/bin/python3 tools/gen_cam_fixtures.py \\
        --pgc-commit $(git -C /tmp/pgc rev-parse HEAD)     # or the mirror's HEAD
    /usr/bin/python3 tools/gen_cam_fixtures.py --help

What it does, per model (test/fixtures/cam/README.md describes the files):
  1. builds the torch module PGC runs on: the narrowed torchvision fixtures are
     rebuilt exactly as tools/gen_torch_fixtures.py builds them (same code, same
     seeds) and checked against the committed ONNX file (every initializer
     bit-identical, logits on the committed torch-fixture input); the Fashion-MNIST
     models exist only as ONNX and are interpreted by tools/onnx_torch.py;
  2. checks that the committed ONNX file, evaluated by an independent NumPy float64
     evaluator at the fixture's input, gives the torch module's logits and, at the
     ONNX tensor our layer resolver picks, PGC's hooked activation;
  3. runs each PGC method with explicit per-image targets and saves its final map
     plus the intermediate values (raw map, low-res normalized map, channel
     weights) recomputed with PGC's own functions, asserting that those
     intermediates reproduce PGC's final map exactly.
"""

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_torch_fixtures as gtf  # noqa: E402  (the narrowed torchvision models)
import onnx  # noqa: E402
import onnx_torch  # noqa: E402

OUT = os.path.join(REPO, "test", "fixtures", "cam")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]

METHODS = ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "HiResCAM", "GradCAMElementWise", "LayerCAM",
           "EigenCAM", "EigenGradCAM", "KPCA_CAM", "FEM", "FinerCAM"]

# Per model: where the torch module comes from, its ONNX file, the input, the
# explicit targets (one per image, all different, not all argmax), the target layer,
# and which methods keep their full-resolution final map (input-size maps cost
# N*H*W*4 bytes each; the low-resolution maps, which determine them, are always kept).
MODELS = {
    "resnet18-w8": {
        "source": ("torchvision", "resnet18"),
        "onnx": "test/fixtures/torch/resnet18-w8.onnx",
        "input": ("randn", 1, (2, 3, 128, 128)),
        "targets": [5, 8],
        "layer": "layer4",
        "final": ["GradCAM"],
        "multilayer": None,
    },
    "resnet50-w8": {
        "source": ("torchvision", "resnet50"),
        "onnx": "test/fixtures/torch/resnet50-w8.onnx",
        "input": ("randn", 1, (2, 3, 128, 128)),
        "targets": [5, 8],
        "layer": "layer4",
        "final": ["GradCAM"],
        "multilayer": None,
    },
    "vgg16-w8": {
        "source": ("torchvision", "vgg16"),
        "onnx": "test/fixtures/torch/vgg16-w8.onnx",
        # The ONNX export only runs at 224x224 (AdaptiveAvgPool2d((7, 7)) became an
        # AveragePool with a fixed 1x1 kernel), so reuse the committed torch-fixture batch.
        "input": ("file", "test/fixtures/torch/inputs/input-3x3x224x224-seed0.npy"),
        "targets": [3, 7, 0],
        "layer": "features.29",
        "final": ["GradCAM"],
        "multilayer": None,
    },
    "fashion-vgg": {
        "source": ("onnx", None),
        "onnx": "models/fashion-vgg.onnx",
        "card": "models/fashion-vgg.json",
        "input": ("fashion", ["coat", "shirt", "sneaker"]),
        "targets": [4, 6, 9],
        "layer": None,  # the card's targetLayer.module
        "final": "all",
        "multilayer": None,
    },
    "fashion-resnet": {
        "source": ("onnx", None),
        "onnx": "models/fashion-resnet.onnx",
        "card": "models/fashion-resnet.json",
        "input": ("fashion", ["coat", "shirt", "sneaker"]),
        "targets": [4, 6, 9],
        "layer": None,
        "final": "all",
        # PGC's multi-layer aggregation, shown on LayerCAM: [shallow, card layer]
        "multilayer": ["layer1", "layer2"],
    },
}

DESCRIPTIONS = {
    "logits.npy": "model output (logits) for the input batch, [N, classes], from the torch module PGC ran",
    "activations.npy": "PGC's recorded activation at the target layer (forward-hook output), [N, K, h, w]",
    "gradients.npy": "PGC's recorded gradient at the target layer of sum_i logits[i, targets[i]] (each image its own class; images are independent in eval mode), [N, K, h, w]",
    "FinerCAM-gradients.npy": "PGC's recorded gradient at the target layer of FinerCAM's target (FinerWeightedTarget per image), [N, K, h, w]",
    "FinerCAM-logit-grad.npy": "d(FinerCAM target of image i)/d(logits[i, :]) by torch autograd in float32, [N, classes]: the seed Finer-CAM backpropagates",
    "EigenCAM-signcorrected-raw.npy": "PGC get_2d_projection_with_sign_correction(activations), [N, h, w] (EigenCAM itself does NOT use it)",
    "EigenGradCAM-signcorrected-raw.npy": "PGC get_2d_projection_with_sign_correction(gradients * activations), [N, h, w] (EigenGradCAM itself does NOT use it)",
    "LayerCAM-multilayer.npy": "PGC LayerCAM final map with target_layers = meta.multilayer.layers (PGC's mean aggregation), [N, H, W]",
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def save(path, a):
    a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, a)
    return list(a.shape)


def rel(path):
    return os.path.relpath(path, REPO).replace(os.sep, "/")


# --------------------------------------------------------------------------
# Models and inputs
# --------------------------------------------------------------------------


def torchvision_model(arch):
    """The narrowed torchvision model exactly as gen_torch_fixtures.gen_one builds it."""
    ws = gtf.weights_seed(0, arch)
    torch.manual_seed(ws)
    model = gtf.build_model(arch, True)
    gtf.randomize(model, torch.Generator().manual_seed(ws + 1))
    return model.eval(), ws


def check_against_committed(name, model, onnx_path, log):
    """Every initializer of the committed ONNX equals the module's state (bitwise),
    and the module reproduces the committed torch-fixture logits."""
    from onnx import numpy_helper
    om = onnx.load(onnx_path)
    sd = model.state_dict()
    same = 0
    for init in om.graph.initializer:
        if init.name not in sd:
            raise RuntimeError("%s: initializer %s is not in the rebuilt module" % (name, init.name))
        if not np.array_equal(numpy_helper.to_array(init), sd[init.name].numpy()):
            raise RuntimeError("%s: initializer %s differs from the rebuilt module" % (name, init.name))
        same += 1
    man = json.load(open(os.path.join(REPO, "test", "fixtures", "torch", name + ".json")))
    x = torch.from_numpy(np.load(os.path.join(REPO, "test", "fixtures", "torch", man["input"]["file"])))
    with torch.no_grad():
        y = model(x).numpy()
    want = np.load(os.path.join(REPO, "test", "fixtures", "torch", man["output"]["file"]))
    err = float(np.abs(y - want).max() / np.abs(want).max())
    if err > 1e-5:
        raise RuntimeError("%s: rebuilt module's logits differ from the committed fixture (rel %g)" % (name, err))
    log("   rebuilt module: %d initializers bit-identical to %s; committed logits rel err %.2g" % (
        same, rel(onnx_path), err))
    return {"initializersBitIdentical": same, "committedLogitsRelErr": err}


def fashion_input(card, names):
    """Card preprocessing in float64: p/255, (p - mean)/std, bilinear half-pixel
    resize 28 -> 56 (coordinates clamped at the border), rounded to float32."""
    from PIL import Image
    pre = card["preprocessing"]
    H, W = pre["resize"]["to"]
    mean, std = float(pre["mean"]), float(pre["std"])
    out = []
    files = []
    for n in names:
        p = os.path.join(REPO, "examples", "fashion", n + ".png")
        files.append(rel(p))
        img = np.asarray(Image.open(p).convert("L"), dtype=np.float64) / 255.0
        img = (img - mean) / std
        out.append(bilinear_np(img, H, W))
    return np.stack(out)[:, None].astype(np.float32), files


def bilinear_np(img, H, W):
    """Half-pixel bilinear resize of one 2-D float64 array (align_corners=False,
    source coordinates clamped to [0, size-1])."""
    h, w = img.shape

    def taps(n_out, n_in):
        s = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        s = np.clip(s, 0, n_in - 1)
        i0 = np.floor(s).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, s - i0
    y0, y1, fy = taps(H, h)
    x0, x1, fx = taps(W, w)
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


# --------------------------------------------------------------------------
# PGC runs
# --------------------------------------------------------------------------


def pgc_modules():
    import pytorch_grad_cam as P
    from pytorch_grad_cam.base_cam import BaseCAM
    from pytorch_grad_cam.utils import image as pimage
    from pytorch_grad_cam.utils import model_targets as pt
    from pytorch_grad_cam.utils import svd_on_activations as psvd
    return P, BaseCAM, pimage, pt, psvd


def as_np(t):
    return None if t is None else t.detach().cpu().numpy()


def run_method(P, BaseCAM, pimage, cls_name, model, layer_mod, x, targets, target_objs):
    """One PGC call; returns final map and PGC-recomputed intermediates."""
    cls = getattr(P, cls_name)
    cam = cls(model=model, target_layers=[layer_mod])
    try:
        final = cam(input_tensor=x, targets=target_objs, aug_smooth=False, eigen_smooth=False)
        acts = as_np(cam.activations_and_grads.activations[0])
        grads = as_np(cam.activations_and_grads.gradients[0]) if cam.activations_and_grads.gradients else None
        outputs = as_np(cam.outputs)
        raw = cam.get_cam_image(x, layer_mod, target_objs, acts, grads, False)
        has_weights = type(cam).get_cam_weights is not BaseCAM.get_cam_weights
        weights = cam.get_cam_weights(x, layer_mod, target_objs, acts, grads) if has_weights else None
        lowres = pimage.scale_cam_image(np.maximum(raw, 0))
        size = cam.get_target_width_height(x)
        again = cam.aggregate_multi_layers([pimage.scale_cam_image(np.maximum(raw, 0), size)[:, None, :]])
    finally:
        cam.activations_and_grads.release()
    if not np.array_equal(again, final):
        raise RuntimeError("%s: PGC intermediates do not reproduce its final map" % cls_name)
    return {"final": final, "acts": acts, "grads": grads, "logits": outputs, "raw": raw,
            "weights": weights, "lowres": lowres}


def run_finer(P, pimage, pt, model, layer_mod, x, logits, targets, alpha=1.0, ranks=(1, 2, 3)):
    """FinerCAM with PGC's default comparison rule (classes ranked 1, 2, 3 by
    |y_j - y_c|, np.argsort order) and alpha, applied to OUR explicit target c instead
    of PGC's argmax main class; the targets are PGC's own FinerWeightedTarget."""
    order = np.argsort(np.abs(logits - logits[np.arange(len(targets)), targets][:, None]), axis=-1)
    for i, c in enumerate(targets):
        if order[i, 0] != c:
            raise RuntimeError("FinerCAM: class %d ties with the target %d" % (order[i, 0], c))
    comps = [[int(order[i, r]) for r in ranks] for i in range(len(targets))]
    objs = [pt.FinerWeightedTarget(int(c), comps[i], alpha) for i, c in enumerate(targets)]
    finer = P.FinerCAM(model=model, target_layers=[layer_mod])  # base_method=GradCAM
    base = finer.base_cam
    try:
        final = finer(input_tensor=x, targets=objs, eigen_smooth=False)
        acts = as_np(base.activations_and_grads.activations[0])
        grads = as_np(base.activations_and_grads.gradients[0])
        raw = base.get_cam_image(x, layer_mod, objs, acts, grads, False)
        weights = base.get_cam_weights(x, layer_mod, objs, acts, grads)
        lowres = pimage.scale_cam_image(np.maximum(raw, 0))
    finally:
        base.activations_and_grads.release()
    # The seed: d target_i / d logits_i, through the softmax weights as well.
    lg = torch.from_numpy(logits.copy()).requires_grad_(True)
    total = sum(o(row) for o, row in zip(objs, lg))
    total.backward()
    # Consistency with PGC's own default path: where our target is the argmax,
    # FinerCAM(targets=None) must build the same target (same map).
    argmax = logits.argmax(-1)
    same = [i for i, c in enumerate(targets) if argmax[i] == c]
    default_check = None
    if same:
        finer2 = P.FinerCAM(model=model, target_layers=[layer_mod])
        try:
            d = finer2(input_tensor=x, targets=None)
        finally:
            finer2.base_cam.activations_and_grads.release()
        default_check = float(np.abs(d[same] - final[same]).max())
        if default_check != 0.0:
            raise RuntimeError("FinerCAM: explicit targets differ from PGC's default path on argmax images")
    return {"final": final, "acts": acts, "grads": grads, "raw": raw, "weights": weights, "lowres": lowres,
            "comparison": comps, "logit_grad": lg.grad.numpy(), "default_check": default_check,
            "default_check_images": same}


def svd_info(a):
    """Top singular values of each image's centered HW x K matrix (float64)."""
    out = []
    for img in a.astype(np.float64):
        m = img.reshape(img.shape[0], -1).T
        m = m - m.mean(axis=0)
        s = np.linalg.svd(m, compute_uv=False)
        out.append([float(v) for v in s[:3]])
    return out


def kpca_info(a):
    """Top eigenvalues of each image's centered sigmoid kernel (gamma = 1/K, coef0 = 1)."""
    out = []
    for img in a.astype(np.float64):
        m = img.reshape(img.shape[0], -1).T
        m = m - m.mean(axis=0)
        k = np.tanh(m @ m.T / m.shape[1] + 1.0)
        n = k.shape[0]
        j = np.ones((n, n)) / n
        kc = k - j @ k - k @ j + j @ k @ j
        ev = np.linalg.eigvalsh(kc)[::-1]
        out.append([float(v) for v in ev[:3]])
    return out


# --------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------


def gen_model(name, cfg, pgc_commit, pgc_version, log):
    P, BaseCAM, pimage, pt, psvd = pgc_modules()
    import cv2
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    # files of tools/gen_cam_fixtures_sweeps.py (listed in its sweeps.json) are not ours
    sweeps = os.path.join(d, "sweeps.json")
    theirs = set(json.load(open(sweeps))["files"]) if os.path.exists(sweeps) else set()
    for f in glob.glob(os.path.join(d, "*.npy")):
        if os.path.basename(f) not in theirs:
            os.remove(f)
    onnx_path = os.path.join(REPO, cfg["onnx"])
    om = onnx.load(onnx_path)
    checks = {}
    card = json.load(open(os.path.join(REPO, cfg["card"]))) if cfg.get("card") else None

    # -- module
    kind, arch = cfg["source"]
    if kind == "torchvision":
        model, ws = torchvision_model(arch)
        checks.update(check_against_committed(name, model, onnx_path, log))
        model_note = ("torch module rebuilt by tools/gen_torch_fixtures.py's build_model/randomize "
                      "(arch %s, weights seed %d); its initializers are bit-identical to the ONNX file" % (arch, ws))
    else:
        model = onnx_torch.load(onnx_path).eval()
        model_note = ("ONNX graph interpreted as a torch module by tools/onnx_torch.py (one module per node, "
                      "identity Scope modules at torch module paths)")
    layer = cfg["layer"] or card["targetLayer"]["module"]
    layer_mod = model.get_submodule(layer)

    # -- input
    ik = cfg["input"]
    images = None
    if ik[0] == "randn":
        x_np = gtf.make_input(ik[1], ik[2]).numpy()
        in_file = os.path.join(OUT, "inputs", "randn-%s-seed%d.npy" % ("x".join(map(str, ik[2])), ik[1]))
        in_how = ("torch.randn(%s) from torch.Generator().manual_seed(%d) (gen_torch_fixtures.make_input); "
                  "used as is (already 'normalized')" % (list(ik[2]), ik[1]))
        if not os.path.exists(in_file) or not np.array_equal(np.load(in_file), x_np):
            save(in_file, x_np)
    elif ik[0] == "file":
        in_file = os.path.join(REPO, ik[1])
        x_np = np.load(in_file)
        in_how = "the committed torch-fixture input batch (torch.randn, seed 0), used as is"
    else:
        x_np, images = fashion_input(card, ik[1])
        in_file = os.path.join(OUT, "inputs", "fashion-%s-%dx%d.npy" % ("-".join(ik[1]), x_np.shape[2], x_np.shape[3]))
        pre = card["preprocessing"]
        in_how = ("examples/fashion PNGs (8-bit grayscale 28x28) as the model card says, in float64: p/255, "
                  "(p - %s)/%s, bilinear half-pixel resize to %dx%d (source coordinates clamped to the border), "
                  "rounded to float32" % (pre["mean"], pre["std"], x_np.shape[2], x_np.shape[3]))
        if not os.path.exists(in_file) or not np.array_equal(np.load(in_file), x_np):
            save(in_file, x_np)
    x = torch.from_numpy(x_np)
    N = x.shape[0]
    targets = list(cfg["targets"])
    assert len(targets) == N and len(set(targets)) == N

    # -- the committed ONNX at this input: logits and the resolver's tensor
    prefix = gtf.scope_of(layer)
    layer_node = [n for n in om.graph.node if n.name.startswith(prefix)][-1]
    env = onnx_torch.evaluate_numpy(om, x_np)
    with torch.no_grad():
        logits_t = model(x).numpy()
    onnx_logits = env[om.graph.output[0].name]
    err = float(np.abs(onnx_logits - logits_t).max())
    scale = float(np.abs(onnx_logits).max())
    if err > 1e-5 * max(1.0, scale):
        raise RuntimeError("%s: committed ONNX at the fixture input differs from the torch module (%g)" % (name, err))
    checks["onnxNumpyVsTorchLogitsMaxAbs"] = err
    log("   ONNX (NumPy float64) vs torch logits: max abs %.2g (max |logit| %.3g)" % (err, scale))
    if kind == "onnx":
        e2, _ = onnx_torch.check(onnx_path, x_np)
        checks["onnxTorchInterpreterVsNumpyLogitsMaxAbs"] = e2

    # -- PGC runs
    target_objs = [pt.ClassifierOutputTarget(int(c)) for c in targets]
    res = {}
    for m in METHODS:
        if m == "FinerCAM":
            continue
        res[m] = run_method(P, BaseCAM, pimage, m, model, layer_mod, x, targets, target_objs)
    base = res["GradCAM"]
    acts, grads, logits = base["acts"], base["grads"], base["logits"]
    for m, r in res.items():
        if not np.array_equal(r["acts"], acts) or not np.array_equal(r["logits"], logits):
            raise RuntimeError("%s: activations/logits differ between PGC runs" % m)
        if r["grads"] is not None and not np.array_equal(r["grads"], grads):
            raise RuntimeError("%s: gradients differ between PGC runs" % m)
    res["FinerCAM"] = fin = run_finer(P, pimage, pt, model, layer_mod, x, logits, targets)
    if not np.array_equal(fin["acts"], acts):
        raise RuntimeError("FinerCAM: activations differ")

    # -- independent checks of what PGC recorded
    hook_val = env[layer_node.output[0]]
    e = float(np.abs(hook_val - acts).max() / max(1e-12, np.abs(acts).max()))
    if e > 1e-5:
        raise RuntimeError("%s: ONNX tensor %s differs from PGC's hooked %s (rel %g)" % (name, layer_node.output[0], layer, e))
    checks["onnxTensorVsPgcActivationRelErr"] = e
    xg = x.clone()
    store = {}

    def keep(_mod, _inp, out):
        out.retain_grad()
        store["a"] = out

    h = layer_mod.register_forward_hook(keep)
    try:
        y = model(xg)
        y[torch.arange(N), torch.tensor(targets)].sum().backward()
    finally:
        h.remove()
    e = float(np.abs(store["a"].grad.numpy() - grads).max() / max(1e-30, np.abs(grads).max()))
    if e > 1e-6:
        raise RuntimeError("%s: PGC gradients differ from a direct autograd (rel %g)" % (name, e))
    checks["pgcGradientsVsDirectAutogradRelErr"] = e
    model.zero_grad()

    # cv2's bilinear resize vs a float64 half-pixel bilinear, and how much PGC's
    # second normalization (after the resize) changes the map.
    H, W = x.shape[2], x.shape[3]
    cv_err = 0.0
    renorm = 0.0
    for m, r in res.items():
        for i in range(N):
            a = cv2.resize(np.float32(r["lowres"][i]), (W, H))
            cv_err = max(cv_err, float(np.abs(a - bilinear_np(r["lowres"][i].astype(np.float64), H, W)).max()))
            renorm = max(renorm, float(np.abs(r["final"][i] - a).max()))
    checks["cv2ResizeVsHalfPixelBilinearMaxAbs"] = cv_err
    checks["secondNormalizationMaxChange"] = renorm

    # -- multi-layer LayerCAM (PGC's aggregation)
    multi = None
    if cfg.get("multilayer"):
        mods = [model.get_submodule(l) for l in cfg["multilayer"]]
        cam = P.LayerCAM(model=model, target_layers=mods)
        try:
            mfinal = cam(input_tensor=x, targets=target_objs)
            macts = [as_np(a) for a in cam.activations_and_grads.activations]
            mgrads = [as_np(g) for g in cam.activations_and_grads.gradients]
        finally:
            cam.activations_and_grads.release()
        multi = {"final": mfinal, "acts": macts, "grads": mgrads}
        for l, a, g in zip(cfg["multilayer"], macts, mgrads):
            if l == layer and not (np.array_equal(a, acts) and np.array_equal(g, grads)):
                raise RuntimeError("multilayer: the target layer's tensors differ")

    # -- write
    files = {}

    def put(fn, arr, desc):
        shape = save(os.path.join(d, fn), arr)
        files[fn] = {"shape": shape, "description": desc}
        return fn

    put("logits.npy", logits, DESCRIPTIONS["logits.npy"])
    put("activations.npy", acts, DESCRIPTIONS["activations.npy"])
    put("gradients.npy", grads, DESCRIPTIONS["gradients.npy"])
    put("FinerCAM-gradients.npy", fin["grads"], DESCRIPTIONS["FinerCAM-gradients.npy"])
    put("FinerCAM-logit-grad.npy", fin["logit_grad"], DESCRIPTIONS["FinerCAM-logit-grad.npy"])
    put("EigenCAM-signcorrected-raw.npy", psvd.get_2d_projection_with_sign_correction(acts),
        DESCRIPTIONS["EigenCAM-signcorrected-raw.npy"])
    put("EigenGradCAM-signcorrected-raw.npy", psvd.get_2d_projection_with_sign_correction(grads * acts),
        DESCRIPTIONS["EigenGradCAM-signcorrected-raw.npy"])
    want_final = METHODS if cfg["final"] == "all" else cfg["final"]
    methods_meta = {}
    for m in METHODS:
        r = res[m]
        entry = {
            "pgcClass": "FinerCAM(base_method=GradCAM)" if m == "FinerCAM" else m,
            "constructor": {"target_layers": [layer], "reshape_transform": None},
            "call": {"targets": "FinerWeightedTarget per image (see finer)" if m == "FinerCAM"
                     else "ClassifierOutputTarget(targets[i]) per image", "eigen_smooth": False},
            "gradients": None, "raw": None, "lowres": None, "final": None, "weights": None,
        }
        if m != "FinerCAM":
            entry["call"]["aug_smooth"] = False
        if m == "KPCA_CAM":
            entry["constructor"].update({"kernel": "sigmoid", "gamma": None})
        if m == "FEM":
            entry["constructor"]["k"] = 2
        if m in ("EigenCAM", "EigenGradCAM"):
            entry["projection"] = "get_2d_projection (no sign correction: LAPACK's sign)"
        if m == "KPCA_CAM":
            entry["projection"] = "get_2d_projection_kernel (sklearn KernelPCA, dense eigh; sign by svd_flip)"
        usesg = m not in ("EigenCAM", "KPCA_CAM", "FEM")
        entry["gradients"] = ("FinerCAM-gradients.npy" if m == "FinerCAM" else "gradients.npy") if usesg else None
        entry["raw"] = put("%s-raw.npy" % m, r["raw"],
                           "PGC %s.get_cam_image(...) on the saved activations/gradients, before relu, [N, h, w]" % m)
        entry["lowres"] = put("%s-lowres.npy" % m, r["lowres"],
                              "PGC scale_cam_image(max(raw, 0)) without a target size: relu + first min-max normalization, [N, h, w]")
        if r["weights"] is not None:
            entry["weights"] = put("%s-weights.npy" % m, r["weights"], "PGC get_cam_weights(...), [N, K]")
        if m in want_final:
            entry["final"] = put("%s.npy" % m, r["final"], "PGC's returned grayscale_cam (final map), [N, H, W]")
        methods_meta[m] = entry
    if multi:
        put("LayerCAM-multilayer.npy", multi["final"], DESCRIPTIONS["LayerCAM-multilayer.npy"])
        for l, a, g in zip(cfg["multilayer"], multi["acts"], multi["grads"]):
            if l == layer:
                continue
            put("multilayer-%s-activations.npy" % l, a, "PGC's recorded activation at %s (multi-layer LayerCAM run)" % l)
            put("multilayer-%s-gradients.npy" % l, g, "PGC's recorded gradient at %s (multi-layer LayerCAM run)" % l)

    argmax = [int(v) for v in logits.argmax(-1)]
    declared = [d.dim_param or d.dim_value for d in om.graph.input[0].type.tensor_type.shape.dim]
    meta = {
        "schema": "camgpu-cam-fixture/1",
        "name": name,
        "model": {
            "file": cfg["onnx"],
            "sha256": sha256(onnx_path),
            "declaredInput": declared,
            "torch": model_note,
            "card": cfg.get("card"),
            "inputShapeNote": None if declared[1:] == list(x_np.shape[1:]) else (
                "the ONNX file declares %s but the fixture runs it at %s: the graph is fully convolutional up to "
                "GlobalAveragePool, and the NumPy evaluation of this very file at this size gives the torch logits "
                "(checks.onnxNumpyVsTorchLogitsMaxAbs); camgpu's Model checks declared dims, so relax them "
                "(graph.inputs[0].dims) to run it" % (declared, list(x_np.shape))),
        },
        "input": {
            "file": rel(in_file),
            "shape": list(x_np.shape),
            "dtype": "float32",
            "layout": "NCHW",
            "how": in_how,
            "images": images,
        },
        "targets": targets,
        "targetNames": [FASHION_CLASSES[c] for c in targets] if card else None,
        "argmax": argmax,
        "score": "logit (pre-softmax): ClassifierOutputTarget",
        "layer": {
            "module": layer,
            "onnxNode": layer_node.name,
            "onnxTensor": layer_node.output[0],
            "shape": list(acts.shape),
            "note": ("last ReLU before the final max pool (features.30)" if layer == "features.29" else
                     "output of the last node inside the module's scope; PGC hooks the torch module's forward output"),
        },
        "inputSize": [int(H), int(W)],
        "pgc": {
            "repository": "https://github.com/jacobgil/pytorch-grad-cam",
            "commit": pgc_commit,
            "version": pgc_version,
            "device": "cpu",
            "torchThreads": torch.get_num_threads(),
            "stubs": ["ttach (no-op classes; aug_smooth is never used)"] if getattr(sys.modules.get("ttach"), "__file__", "").startswith("/tmp") else [],
            "options": {"aug_smooth": False, "eigen_smooth": False, "reshape_transform": None, "detach": True,
                        "uses the model output": "logits (no softmax) for every method; FinerCAM's target uses softmax weights"},
        },
        "methods": methods_meta,
        "finer": {
            "alpha": 1.0,
            "comparisonRanks": [1, 2, 3],
            "rule": ("PGC's FinerCAM default (targets=None) ranks classes by |y_j - y_main| with np.argsort and takes ranks "
                     "1, 2, 3, main = argmax; here main = targets[i] and the same rule gives the comparison classes; the "
                     "targets are PGC FinerWeightedTarget(main, comparison, alpha)"),
            "main": targets,
            "comparison": fin["comparison"],
            "defaultPathCheckedOnImages": fin["default_check_images"],
            "logitGrad": "FinerCAM-logit-grad.npy",
            "gradients": "FinerCAM-gradients.npy",
        },
        "eigen": {
            "activationSingularValues": svd_info(acts),
            "gradActSingularValues": svd_info(grads * acts),
            "kpcaTopEigenvalues": kpca_info(acts),
            "note": "float64, per image, of the centered HW x K matrices; a small gap between the first two makes the first direction ill-conditioned",
        },
        "multilayer": None if not multi else {
            "method": "LayerCAM", "layers": cfg["multilayer"], "final": "LayerCAM-multilayer.npy",
            "aggregation": "PGC: per layer relu -> min-max -> cv2 resize to the input; mean over layers; min-max again",
            "activations": {l: ("activations.npy" if l == layer else "multilayer-%s-activations.npy" % l) for l in cfg["multilayer"]},
            "gradients": {l: ("gradients.npy" if l == layer else "multilayer-%s-gradients.npy" % l) for l in cfg["multilayer"]},
        },
        "checks": checks,
        "files": dict(sorted(files.items())),
        "versions": {
            "torch": torch.__version__, "numpy": np.__version__, "onnx": onnx.__version__,
            "opencv": cv2.__version__, "sklearn": __import__("sklearn").__version__,
            "python": sys.version.split()[0],
        },
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log("   targets %s (argmax %s); layer %s %s -> %s" % (targets, argmax, layer, list(acts.shape), layer_node.output[0]))
    log("   checks: %s" % json.dumps(checks))
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of %s" % ",".join(MODELS))
    ap.add_argument("--pgc-commit", required=True, help="commit hash of the PGC source on PYTHONPATH (recorded in meta.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import pytorch_grad_cam
    src = os.path.dirname(os.path.dirname(os.path.abspath(pytorch_grad_cam.__file__)))
    if os.path.abspath(src).startswith(REPO):
        sys.exit("refusing to run PGC from inside the repository")
    version = None
    setup = os.path.join(src, "setup.py")
    if os.path.exists(setup):
        import re
        m = re.search(r"version\s*=\s*['\"]([^'\"]+)", open(setup).read())
        version = m.group(1) if m else None
    print("PGC from %s (version %s, commit %s)" % (src, version, args.pgc_commit))
    index = {"pgc": {"commit": args.pgc_commit, "version": version}, "models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(name)
        meta = gen_model(name, MODELS[name], args.pgc_commit, version, print)
        index["models"][name] = {"meta": name + "/meta.json", "layer": meta["layer"]["module"],
                                 "input": meta["input"]["file"], "targets": meta["targets"]}
    ipath = os.path.join(OUT, "index.json")
    if os.path.exists(ipath) and args.models != ",".join(MODELS):
        old = json.load(open(ipath))
        old["models"].update(index["models"])
        old["pgc"] = index["pgc"]
        index = old
    with open(ipath, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
    total = 0
    for root, _, fns in os.walk(OUT):
        for fn in fns:
            total += os.path.getsize(os.path.join(root, fn))
    print("total %.2f MB under %s" % (total / 1e6, rel(OUT)))


if __name__ == "__main__":
    main()
