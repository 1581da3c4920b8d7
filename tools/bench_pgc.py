#!/usr/bin/python3
"""Peer benchmark for `camgpu bench --explain`: pytorch-grad-cam (PGC) on Debian's PyTorch, CPU.

One model per process (tools/bench-all.mjs --explain --peers starts one per model).  Prints
one JSON object on stdout (progress goes to stderr).

Getting PGC (never vendored or copied into this repository): any checkout of
jacobgil/pytorch-grad-cam, e.g.

    git clone https://github.com/jacobgil/pytorch-grad-cam /tmp/pgc
    # or, from a bare mirror:  mkdir -p /tmp/pgc && git --git-dir=MIRROR archive HEAD pytorch_grad_cam setup.py | tar -x -C /tmp/pgc

and point PGC_PATH at the folder that holds `pytorch_grad_cam/`.  PGC imports `ttach` at
module level (Debian does not package it; it is only used with aug_smooth=True, which this
benchmark never sets): when it is not importable this script registers an in-memory stand-in
with no-op classes (the JSON says so).  Everything else PGC imports is in Debian:
python3-torch python3-torchvision python3-opencv python3-sklearn python3-scipy
python3-matplotlib python3-tqdm (python3-onnx for the weight check).

    PGC_PATH=/tmp/pgc /usr/bin/python3 tools/bench_pgc.py --model resnet50 --layer layer4 \\
        --batch 1,8 --iters 3 --warmup 1 [--models-dir .cache/models] [--threads 2] [--maps-out DIR]

What is timed, per batch size, on the same input camgpu's benchmarks feed (tools/bench.ts
seededInput: an LCG, uniform in [-1, 1]) and the same torchvision architecture and weights
(rebuilt with tools/gen_torch_fixtures.py's own code and seeds, and checked bit for bit
against the ONNX file's initializers unless --no-check):

  - each method: `cam(input_tensor=x, targets=None)` (PGC finds each image's argmax class
    itself, as camgpu's explain does by default), with the cam object made and released
    inside the timed call (its hooks must not stay on the layer); PGC returns NumPy maps at
    input size, so there is nothing to read back;
  - Activation-CAM, which PGC does not have, as a BaseCAM subclass with w_k = 1 and no
    gradients (the way PGC's own EigenCAM/FEM are written);
  - 'bare': torch's minimal forward + backward to the layer, the peer of camgpu's bare pass:
    forward with a hook on the layer, torch.autograd.grad(sum_i y_i[argmax_i], A) with the
    parameters' requires_grad off (PGC itself leaves them on, so its backward also computes
    every weight gradient);
  - 'all' / 'gradient': PGC runs each method with its own forward and backward, so these are
    the sums of the single-method medians unless --measure-all times the sequence directly.
"""

import argparse
import json
import os
import sys
import time
import types

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

METHODS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "gradcamelementwise", "layercam",
           "eigencam", "eigengradcam", "kpcacam", "fem", "finercam", "activationcam"]
GRADIENT_CAMS = ["gradcam", "gradcam++", "xgradcam", "hirescam", "gradcamelementwise", "layercam",
                 "eigengradcam", "finercam"]
PGC_CLASS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
             "hirescam": "HiResCAM", "gradcamelementwise": "GradCAMElementWise", "layercam": "LayerCAM",
             "eigencam": "EigenCAM", "eigengradcam": "EigenGradCAM", "kpcacam": "KPCA_CAM", "fem": "FEM",
             "finercam": "FinerCAM", "activationcam": None}


def log(s):
    sys.stderr.write(s + "\n")
    sys.stderr.flush()


def seeded_input(n):
    """tools/bench.ts seededInput: s = (1103515245 s + 12345) mod 2^32 from 12345, s / 2^32 * 2 - 1, as float32."""
    out = np.empty(n, dtype=np.float64)
    s = 12345
    for i in range(n):
        s = (1103515245 * s + 12345) & 0xFFFFFFFF
        out[i] = s
    return (out / 4294967296.0 * 2.0 - 1.0).astype(np.float32)


def quantile(sorted_vals, q):
    pos = (len(sorted_vals) - 1) * q
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def timed(times, first):
    s = sorted(times)
    return {"medianMs": quantile(s, 0.5), "p10Ms": quantile(s, 0.1), "p90Ms": quantile(s, 0.9), "firstMs": first,
            "timesMs": times}


def import_pgc():
    path = os.environ.get("PGC_PATH")
    if not path or not os.path.isdir(os.path.join(path, "pytorch_grad_cam")):
        sys.exit("bench_pgc: set PGC_PATH to a folder holding pytorch_grad_cam/ (a checkout of "
                 "jacobgil/pytorch-grad-cam; see this script's docstring)")
    if os.path.abspath(path).startswith(REPO + os.sep):
        sys.exit("bench_pgc: refusing to run PGC from inside the repository")
    sys.path.insert(0, path)
    stubbed = False
    try:
        import ttach  # noqa: F401
    except ImportError:
        # PGC builds these in BaseCAM.__init__ and uses them only with aug_smooth=True.
        stub = types.ModuleType("ttach")

        class _Unused:
            def __init__(self, *a, **k):
                pass

            def __iter__(self):
                raise RuntimeError("ttach stand-in: test-time augmentation is not available")
        for n in ("Compose", "HorizontalFlip", "Multiply"):
            setattr(stub, n, type(n, (_Unused,), {}))
        sys.modules["ttach"] = stub
        stubbed = True
    import pytorch_grad_cam as P
    from pytorch_grad_cam.base_cam import BaseCAM
    version = None
    setup = os.path.join(path, "setup.py")
    if os.path.exists(setup):
        import re
        m = re.search(r"version\s*=\s*['\"]([^'\"]+)", open(setup).read())
        version = m.group(1) if m else None
    return P, BaseCAM, {"path": path, "version": version, "ttachStub": stubbed}


def build(name):
    """The torch module gen_torch_fixtures.py exported as <name>.onnx (full size, or '-w8' narrowed)."""
    import gen_torch_fixtures as gtf
    small = name.endswith("-w%d" % gtf.WIDTH_DIV)
    arch = name[: -len("-w%d" % gtf.WIDTH_DIV)] if small else name
    if arch not in gtf.ALL_MODELS:
        sys.exit("bench_pgc: unknown model %s (one of %s, optionally with -w%d)" % (name, ", ".join(gtf.ALL_MODELS), gtf.WIDTH_DIV))
    ws = gtf.weights_seed(0, arch)
    torch.manual_seed(ws)
    model = gtf.build_model(arch, small)
    gtf.randomize(model, torch.Generator().manual_seed(ws + 1))
    return model.eval(), arch, small, ws


def check_onnx(model, onnx_path):
    """Every initializer of the ONNX file equals the rebuilt module's state, bit for bit."""
    import onnx
    from onnx import numpy_helper
    om = onnx.load(onnx_path)
    sd = model.state_dict()
    n = 0
    for init in om.graph.initializer:
        if init.name not in sd or not np.array_equal(numpy_helper.to_array(init), sd[init.name].numpy()):
            raise RuntimeError("%s: initializer %s differs from the rebuilt module" % (onnx_path, init.name))
        n += 1
    return n


def make_activation_cam(BaseCAM):
    class ActivationCAM(BaseCAM):
        """w_k = 1 (SPEC §1 Activation-CAM); PGC has no such class."""

        def __init__(self, model, target_layers, reshape_transform=None):
            super().__init__(model, target_layers, reshape_transform, uses_gradients=False)

        def get_cam_weights(self, input_tensor, target_layer, target_category, activations, grads):
            return np.ones(activations.shape[:2], dtype=np.float32)
    return ActivationCAM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="resnet50, vgg16, ... or resnet50-w8 (the narrowed fixtures)")
    ap.add_argument("--models-dir", default=os.path.join(REPO, ".cache", "models"),
                    help="folder with <model>.onnx and <model>.json (input size, weight check)")
    ap.add_argument("--layer", required=True, help="torch module path: layer4, features.29, ...")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--measure-all", action="store_true", help="also time 'all' and 'gradient' as sequences of calls")
    ap.add_argument("--no-check", action="store_true", help="skip the bitwise weight check against the ONNX file")
    ap.add_argument("--maps-out", help="write each method's maps at the first batch size here (<method>.npy)")
    ap.add_argument("--json", action="store_true", help="(accepted for symmetry; the result is always JSON on stdout)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    for m in methods:
        if m not in PGC_CLASS:
            sys.exit("bench_pgc: unknown method %s (known: %s)" % (m, ", ".join(METHODS)))
    batches = [int(b) for b in a.batch.split(",")]
    P, BaseCAM, pgc = import_pgc()
    ActivationCAM = make_activation_cam(BaseCAM)
    model, arch, small, ws = build(a.model)
    for p in model.parameters():
        p.requires_grad_(True)  # as a PGC user has them
    layer = model.get_submodule(a.layer)

    onnx_path = os.path.join(a.models_dir, a.model + ".onnx")
    manifest_path = os.path.join(a.models_dir, a.model + ".json")
    shape = [3, 224, 224] if not (small and arch.startswith("resnet")) else [3, 64, 64]
    if os.path.exists(manifest_path):
        shape = json.load(open(manifest_path))["input"]["shape"][1:]
    checked = None
    if not a.no_check:
        if not os.path.exists(onnx_path):
            sys.exit("bench_pgc: %s is missing (or pass --no-check)" % onnx_path)
        t0 = time.perf_counter()
        checked = check_onnx(model, onnx_path)
        log("%s: %d initializers bit-identical to %s (%.1f s)" % (a.model, checked, onnx_path, time.perf_counter() - t0))
    per = int(np.prod(shape))
    full = seeded_input(max(batches) * per)

    def bare(x):
        store = {}

        def hook(_m, _i, out):
            # Nothing upstream needs gradients: A becomes the leaf the backward stops at.
            out.requires_grad_(True)
            store["a"] = out
        for p in model.parameters():
            p.requires_grad_(False)
        h = layer.register_forward_hook(hook)
        try:
            t0 = time.perf_counter()
            y = model(x)
            score = y.gather(1, y.argmax(1, keepdim=True)).sum()
            (g,) = torch.autograd.grad(score, store["a"])
            _ = g.numpy()
            ms = (time.perf_counter() - t0) * 1000
        finally:
            h.remove()
            for p in model.parameters():
                p.requires_grad_(True)
        return ms

    def call(m, x):
        """One PGC call (cam made, called and released); returns (ms, maps)."""
        t0 = time.perf_counter()
        if m == "activationcam":
            cam = ActivationCAM(model=model, target_layers=[layer])
        else:
            cam = getattr(P, PGC_CLASS[m])(model=model, target_layers=[layer])
        try:
            maps = cam(input_tensor=x, targets=None)
        finally:
            (cam.base_cam if m == "finercam" else cam).activations_and_grads.release()
        return (time.perf_counter() - t0) * 1000, maps

    out_batches = []
    for bi, b in enumerate(batches):
        x = torch.from_numpy(full[: b * per].reshape([b] + list(shape)).copy())
        with torch.no_grad():
            targets = model(x).argmax(1).tolist()
        entries = []
        bfirst = bare(x)
        for _ in range(a.warmup):
            bare(x)
        bt = [bare(x) for _ in range(a.iters)]
        bare_t = timed(bt, bfirst)
        log("%s batch %d bare fwd+bwd %.1f ms" % (a.model, b, bare_t["medianMs"]))
        for m in methods:
            first, maps = call(m, x)
            if bi == 0 and a.maps_out:
                os.makedirs(a.maps_out, exist_ok=True)
                np.save(os.path.join(a.maps_out, "%s.npy" % m), np.ascontiguousarray(maps, dtype="<f4"))
            for _ in range(a.warmup):
                call(m, x)
            t = [call(m, x)[0] for _ in range(a.iters)]
            e = {"name": m, "methods": [m], "explain": timed(t, first), "measured": True}
            e["overBare"] = e["explain"]["medianMs"] / bare_t["medianMs"]
            entries.append(e)
            log("%s batch %d %-18s %9.1f ms (p10 %.1f, p90 %.1f)" % (a.model, b, m, e["explain"]["medianMs"], e["explain"]["p10Ms"], e["explain"]["p90Ms"]))
        for name, group in (("all", methods), ("gradient", [m for m in methods if m in GRADIENT_CAMS])):
            if len(group) < 2:
                continue
            if a.measure_all:
                def seq():
                    return sum(call(m, x)[0] for m in group)
                first = seq()
                for _ in range(a.warmup):
                    seq()
                e = {"name": name, "methods": group, "explain": timed([seq() for _ in range(a.iters)], first), "measured": True}
            else:
                med = sum(next(en for en in entries if en["name"] == m)["explain"]["medianMs"] for m in group)
                e = {"name": name, "methods": group, "measured": False,
                     "explain": {"medianMs": med, "p10Ms": None, "p90Ms": None, "firstMs": None, "timesMs": []},
                     "note": "sum of the single-method medians (PGC runs each method with its own forward and backward)"}
            e["overBare"] = e["explain"]["medianMs"] / bare_t["medianMs"]
            entries.append(e)
        out_batches.append({"batch": b, "bare": bare_t, "entries": entries, "targets": targets})

    res = {
        "kind": "pgc", "engine": "pytorch-grad-cam %s on PyTorch %s (CPU, %d threads)" % (pgc["version"], torch.__version__, torch.get_num_threads()),
        "model": a.model, "arch": arch, "narrow": small, "weightsSeed": ws, "onnx": onnx_path, "initializersChecked": checked,
        "layer": a.layer, "input": shape, "pgc": pgc, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": sys.version.split()[0], "numpy": np.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bare": "torch forward with a hook on the layer + torch.autograd.grad(sum_i y_i[argmax_i], A), parameters' requires_grad off, gradient as NumPy",
        "call": "cam = <PGC class>(model, target_layers=[layer]); cam(input_tensor=x, targets=None); hooks released; maps are NumPy at input size",
        "batches": out_batches,
    }
    sys.stdout.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
