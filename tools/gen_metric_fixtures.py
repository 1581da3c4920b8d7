#!/usr/bin/python3
"""Golden outputs of the saliency metrics' reference libraries for camgpu's src/metrics:
insertion / deletion in three presets, PGC's Average Drop / Increase in Confidence and
Complexity, Captum's max-sensitivity, Quantus's Sparseness and Pointing Game.

Writes test/fixtures/metrics/<model>/ for the models below (committed; the section
"Insertion, deletion, AD/AI, complexity, sensitivity, sparseness, pointing game" of
test/fixtures/metrics/README.md describes every file and every library quirk).  CI never
runs this script: it needs the reference libraries, which camgpu never vendors or copies.

Obtaining the libraries (snapshots of their default branches; `git archive` of a bare
mirror is enough, no install):

    for r in aenglebert/polycam eclique/RISE frgfm/torch-cam jacobgil/pytorch-grad-cam \\
             pytorch/captum understandable-machine-intelligence-lab/Quantus; do
        git clone <the GitHub repository $r> /tmp/refs/${r#*/}; done
    # or: git --git-dir=MIRROR archive HEAD <dir> | tar -x -C /tmp/refs/<name>

PGC imports `ttach` at module level (Debian has none): put the stand-in `ttach.py` that
tools/gen_cam_fixtures.py describes in a directory OUTSIDE the repository and pass it as
--stubs.  torch-cam's package `__init__` asks importlib.metadata for its own version,
which an uninstalled checkout lacks: this script imports `torchcam.metrics` through a
bare package object instead (torch-cam's `__init__` only defines lazy imports).

Run (Debian's Python: torch 1.13, torchvision, scipy, onnx, cv2, sklearn; CPU, no network):

    /usr/bin/python3 tools/gen_metric_fixtures.py \\
        --poly /tmp/refs/polycam --rise /tmp/refs/RISE --tc /tmp/refs/torch-cam \\
        --pgc /tmp/refs/pytorch-grad-cam --captum /tmp/refs/captum --quantus /tmp/refs/Quantus \\
        --stubs /tmp/stubs \\
        --commits poly=<sha>,rise=<sha>,tc=<sha>,pgc=<sha>,captum=<sha>,quantus=<sha>

(each <sha> from `git rev-parse HEAD` of that checkout or mirror).

Per model (the part-1 CAM fixture's model, committed input and explicit targets; the
torch module is rebuilt as tools/gen_cam_fixtures.py does, checked against its ONNX file
by tools/onnx_torch.py's NumPy float64 evaluator and against the part-1 logits):
  1. maps.npy, a tie-free map per image derived from the part-1 PGC Grad-CAM map, and
     maps-ties.npy, a quantized one full of exact ties; boxes.json, one box per image;
  2. each library's metric on those maps, called as its own code is meant to be called,
     with only the adaptations the README lists (softmax wrappers, `.cuda()` as identity,
     RISE's 3-channel reshape, a stand-in CAM extractor for torch-cam, perturbations fed to
     Captum through its `perturb_func`);
  3. independent checks of what was read in their code: end points of every curve by
     direct forwards, one interior step recomputed from a float64 ordering, the blur
     against a float64 reflect-padded Gaussian, PGC's drop against p and o, Captum's value
     against a direct autograd recomputation, Gini and pointing game from their
     definitions.  Every check's value lands in metrics.json "checks".
"""

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402  (models, inputs)
import gen_cam_fixtures_sweeps as gsw  # noqa: E402  (build(): module + input as part 1)
import onnx  # noqa: E402
import onnx_torch  # noqa: E402

OUT = os.path.join(REPO, "test", "fixtures", "metrics")
CAM = os.path.join(REPO, "test", "fixtures", "cam")
SCHEMA = "camgpu-metric-fixture/1"
MODELS = ["fashion-vgg", "fashion-resnet", "resnet18-w8"]
SENSITIVITY = {"fashion-vgg", "fashion-resnet"}  # delta.npy is N*10*C*H*W floats
REFS = {
    "poly": ("aenglebert/polycam", "benchmarks/metrics.py"),
    "rise": ("eclique/RISE", "evaluation.py"),
    "tc": ("frgfm/torch-cam", "torchcam/metrics.py"),
    "pgc": ("jacobgil/pytorch-grad-cam", "pytorch_grad_cam/metrics/cam_mult_image.py, pytorch_grad_cam/metrics/arcc.py"),
    "captum": ("pytorch/captum", "captum/metrics/_core/sensitivity.py"),
    "quantus": ("understandable-machine-intelligence-lab/Quantus",
                "quantus/metrics/complexity/sparseness.py, quantus/metrics/localisation/pointing_game.py"),
}
MAPSETS = ["maps", "maps-ties"]
POLY_STEPS = 224
RISE_STEPS = 224
TC_STEPS = 20
SENS_SAMPLES = 10
SENS_RADIUS = 0.02
SENS_SEED = 20240610


def log(*a):
    print(*a, flush=True)


def f32(v):
    """A float32 value as the shortest decimal that round-trips it (9 significant digits)."""
    return float("%.9g" % float(np.float32(v)))


def f32s(a):
    return [f32(v) for v in np.asarray(a).reshape(-1)]


def f64s(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save(path, a):
    a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    np.save(path, a)
    return list(a.shape)


def dump_json(path, obj):
    """Indented JSON with every list of numbers on one line (curves stay diffable and small)."""
    text = json.dumps(obj, indent=1, sort_keys=True)
    text = re.sub(r"\[\s*(-?[0-9][^\[\]{}\"]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")


def rel(path):
    return os.path.relpath(path, REPO).replace(os.sep, "/")


def worst(checks, key, value, tol):
    checks[key] = float(value)
    if not value <= tol:
        raise RuntimeError("check %s = %.3g exceeds %.3g" % (key, value, tol))


# --------------------------------------------------------------------------
# Maps and boxes
# --------------------------------------------------------------------------


def minmax64(a):
    a = np.asarray(a, dtype=np.float64)
    return (a - a.min()) / (a.max() - a.min())


def strictly_distinct_f32(m64):
    """Rounds to float32 keeping every value distinct and the float64 order: where two
    neighbours in that order round to the same float32, the lower one steps one ulp down
    (walking from the top, so the maximum stays exactly 1)."""
    flat = m64.reshape(-1)
    order = np.argsort(flat, kind="stable")
    v = flat[order].astype(np.float32)
    moved = 0
    for i in range(v.size - 2, -1, -1):
        if v[i] >= v[i + 1]:
            v[i] = np.nextafter(v[i + 1], np.float32(-np.inf))
            moved += 1
    out = np.empty_like(v)
    out[order] = v
    out = out.reshape(m64.shape)
    if out.min() < 0 or out.max() > 1 or np.unique(out).size != out.size:
        raise RuntimeError("tie-free map construction failed")
    return out, moved


def make_maps(gradcam, checks):
    """maps: 0.90 u(GradCAM) + 0.08 (closeness to the map's centroid) + 0.02 (raster ramp),
    min-max normalized, float32 with every value distinct.  The centroid term orders the
    relu'd zero region (smoothly, image-dependently), the ramp separates what both tie.
    maps-ties: u(GradCAM) shifted by 0.2, relu'd, quantized to 16 levels (exact zeros and
    long runs of equal values)."""
    N, H, W = gradcam.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    ramp = (yy * W + xx) / (H * W - 1)
    tie_free, ties = [], []
    for i in range(N):
        g = minmax64(gradcam[i])
        cy, cx = (g * yy).sum() / g.sum(), (g * xx).sum() / g.sum()
        d = np.hypot(yy - cy, xx - cx)
        m, moved = strictly_distinct_f32(minmax64(0.90 * g + 0.08 * (1 - d / d.max()) + 0.02 * ramp))
        checks["maps: image %d float32 values nudged one ulp to stay distinct" % i] = moved
        tie_free.append(m)
        q = (np.floor(np.clip((g - 0.2) / 0.8, 0, 1) * 16) / 16).astype(np.float32)
        ties.append(q)
    tie_free, ties = np.stack(tie_free), np.stack(ties)
    for i in range(N):
        if np.unique(tie_free[i]).size != H * W:
            raise RuntimeError("maps.npy image %d has ties" % i)
    return tie_free, ties


def make_boxes(maps):
    """One box per image, [y0, x0, y1, x1] with y1/x1 exclusive: image 0 contains the
    map's argmax (off-centre), image 1 lies in the far corner (a miss), image 2 (if any)
    stops 3 columns short of the argmax (a miss that a tolerance of 3 or more px turns
    into a hit)."""
    N, H, W = maps.shape
    bh, bw = max(4, H // 4), max(4, (W * 2) // 7)
    boxes = []
    for i in range(N):
        ay, ax = divmod(int(np.argmax(maps[i])), W)
        if i % 3 == 0:
            y0 = min(max(ay - bh // 3, 0), H - bh)
            x0 = min(max(ax - (2 * bw) // 3, 0), W - bw)
        elif i % 3 == 1:
            y0 = 0 if ay >= H // 2 else H - bh
            x0 = 0 if ax >= W // 2 else W - bw
        else:
            y0 = min(max(ay - bh // 2, 0), H - bh)
            x0 = ax + 3 if ax + 3 + bw <= W else ax - 2 - bw
        box = [int(y0), int(x0), int(y0 + bh), int(x0 + bw)]
        assert 0 <= box[0] < box[2] <= H and 0 <= box[1] < box[3] <= W
        boxes.append(box)
    return boxes


def box_mask(box, H, W):
    m = np.zeros((H, W), dtype=np.float32)
    m[box[0]:box[2], box[1]:box[3]] = 1
    return m


# --------------------------------------------------------------------------
# Independent references used as checks
# --------------------------------------------------------------------------


def blur_reflect64(x, k=11, sigma=5.0):
    """Separable Gaussian (torchvision's sampled kernel) with reflect padding, float64."""
    t = np.linspace(-(k // 2), k // 2, k)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    p = k // 2
    xp = np.pad(np.asarray(x, dtype=np.float64), [(0, 0)] * (x.ndim - 2) + [(p, p), (p, p)], mode="reflect")
    H, W = x.shape[-2:]
    rows = sum(g[j] * xp[..., j:j + H, :] for j in range(k))
    return sum(g[j] * rows[..., :, j:j + W] for j in range(k))


def desc_order(m):
    """Descending by value, ties by pixel index (float64 view of float32 values)."""
    flat = np.asarray(m, dtype=np.float64).reshape(-1)
    return np.lexsort((np.arange(flat.size), -flat))


def softmax_score(model, x, cls):
    with torch.no_grad():
        return torch.softmax(model(x), -1)[:, cls].numpy().astype(np.float64)


# --------------------------------------------------------------------------
# The libraries
# --------------------------------------------------------------------------


class SoftmaxModel(torch.nn.Module):
    """The model with softmax on its output; `channels` > C reads only the first C
    channels of its input (RISE's code is written for 3 channels: a 1-channel image is fed
    replicated to 3, every channel updated alike, so channel 0 carries the 1-channel run)."""

    def __init__(self, model, channels=None):
        super().__init__()
        self.model = model
        self.channels = channels

    def forward(self, x):
        if self.channels is not None:
            x = x[:, :self.channels]
        return torch.softmax(self.model(x), dim=-1)


def run_poly(model, x, maps, targets, checks, tag):
    import torchvision.transforms.functional as TF
    from benchmarks.metrics import Deletion, Insertion
    soft = SoftmaxModel(model).eval()
    N, C, H, W = x.shape
    pps = (H * W + POLY_STEPS - 1) // POLY_STEPS
    out = {"insertion": [], "deletion": []}
    for i in range(N):
        xi, mi = x[i:i + 1], torch.from_numpy(maps[i])
        for kind, cls in (("insertion", Insertion), ("deletion", Deletion)):
            metric = cls(soft, POLY_STEPS, 32, baseline="blur")
            auc, scores = metric(xi, mi, class_idx=int(targets[i]))
            scores = scores.numpy()
            if scores.shape != (POLY_STEPS,):
                raise RuntimeError("POLY curve length %s" % (scores.shape,))
            out[kind].append({"auc": f32(float(auc)), "curve": f32s(scores)})
        # independent: the blur, the last points, the first step from a float64 ordering
        tv = TF.gaussian_blur(xi, kernel_size=[11, 11], sigma=[5, 5]).numpy()
        worst(checks, "POLY %s: torchvision gaussian_blur vs float64 reflect Gaussian, image %d" % (tag, i),
              float(np.abs(tv - blur_reflect64(xi.numpy())).max()), 1e-5)
        sub = torch.from_numpy(tv)
        full = pps * POLY_STEPS >= H * W
        clean = softmax_score(model, xi, targets[i])[0]
        blurred = softmax_score(model, sub, targets[i])[0]
        if full:
            worst(checks, "POLY %s: insertion last point vs softmax(x), image %d" % (tag, i),
                  abs(out["insertion"][i]["curve"][-1] - clean), 1e-6)
            worst(checks, "POLY %s: deletion last point vs softmax(blur x), image %d" % (tag, i),
                  abs(out["deletion"][i]["curve"][-1] - blurred), 1e-6)
        if tag == "maps":
            top = desc_order(maps[i])[:pps]
            step = xi.clone().reshape(C, H * W)
            step[:, top] = sub.reshape(C, H * W)[:, top]
            want = softmax_score(model, step.reshape(1, C, H, W), targets[i])[0]
            worst(checks, "POLY %s: deletion step 1 vs direct forward, image %d" % (tag, i),
                  abs(out["deletion"][i]["curve"][0] - want), 1e-6)
            worst(checks, "POLY %s: auc = mean of the curve, image %d" % (tag, i),
                  abs(out["insertion"][i]["auc"] - float(np.mean(np.float32(out["insertion"][i]["curve"])))), 1e-6)
    settings = {"nSteps": POLY_STEPS, "pixelsPerStep": pps, "baseline": "blur", "batchSize": 32,
                "score": "softmax of the model output at class_idx = targets[i]",
                "auc": "sum(scores) / n_steps (the curve has no point before the first step)"}
    return out, settings


def load_rise(rise_dir):
    sys.path.insert(0, rise_dir)  # its `from utils import *`
    try:
        spec = importlib.util.spec_from_file_location("rise_evaluation", os.path.join(rise_dir, "evaluation.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(rise_dir)
    return mod


def run_rise(R, model, x, maps, checks, tag):
    N, C, H, W = x.shape
    step = (H * W + RISE_STEPS - 1) // RISE_STEPS
    R.HW = H * W
    kern = R.gkern(11, 5)  # [3, 3, 11, 11], the same kernel on the diagonal

    def blur(t):
        return F.conv2d(t, kern, padding=11 // 2)

    if C == 1:
        soft, x3 = SoftmaxModel(model, channels=1).eval(), x.repeat(1, 3, 1, 1)
    elif C == 3:
        soft, x3 = SoftmaxModel(model).eval(), x.clone()
    else:
        raise RuntimeError("RISE runs on 1 or 3 channels here")
    saved_cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    out = {"insertion": [], "deletion": []}
    try:
        with torch.no_grad():
            for i in range(N):
                for kind, mode, substrate in (("insertion", "ins", blur), ("deletion", "del", torch.zeros_like)):
                    metric = R.CausalMetric(soft, mode, step, substrate_fn=substrate)
                    scores = metric.single_run(x3[i:i + 1].clone(), maps[i].copy())
                    c = int(torch.argmax(soft(x3[i:i + 1]), 1)[0])
                    out[kind].append({"class": c, "auc": f32(R.auc(scores)), "curve": f32s(scores)})
    finally:
        torch.Tensor.cuda = saved_cuda
    n = (H * W + step - 1) // step
    k2 = kern[0, 0].numpy().astype(np.float64)
    for i in range(N):
        c = out["insertion"][i]["class"]
        xi = x[i:i + 1]
        blurred = F.conv2d(xi, kern[:C, :C], padding=5)
        ends = [("insertion", 0, softmax_score(model, blurred, c)[0]), ("insertion", -1, softmax_score(model, xi, c)[0]),
                ("deletion", 0, softmax_score(model, xi, c)[0]), ("deletion", -1, softmax_score(model, torch.zeros_like(xi), c)[0])]
        for kind, at, want in ends:
            worst(checks, "RISE %s: %s point %d vs direct forward, image %d" % (tag, kind, at, i),
                  abs(out[kind][i]["curve"][at] - want), 1e-6)
        if len(out["insertion"][i]["curve"]) != n + 1:
            raise RuntimeError("RISE curve length")
        if tag == "maps":
            top = desc_order(maps[i])[:step]
            st = xi.clone().reshape(C, H * W)
            st[:, top] = 0
            want = softmax_score(model, st.reshape(1, C, H, W), c)[0]
            worst(checks, "RISE %s: deletion point 1 vs direct forward, image %d" % (tag, i),
                  abs(out["deletion"][i]["curve"][1] - want), 1e-6)
            cur = np.float64(out["deletion"][i]["curve"])
            worst(checks, "RISE %s: auc = trapezoid over n+1 points, image %d" % (tag, i),
                  abs(out["deletion"][i]["auc"] - np.trapz(cur, dx=1.0 / n)), 1e-6)
    settings = {"step": step, "nSteps": n, "points": n + 1,
                "insertionSubstrate": "conv2d(x, gkern(11, 5), padding=5): zero padding, the kernel below on each channel",
                "deletionSubstrate": "zeros", "score": "softmax at the argmax class of the clean image (stored per image)",
                "auc": "(sum - first/2 - last/2) / n, i.e. the trapezoid over n+1 points spaced 1/n",
                "kernel": [f32s(row) for row in k2],
                "lastStepPixels": H * W - step * (n - 1)}
    return out, settings


def load_torchcam(tc_dir):
    pkg = types.ModuleType("torchcam")
    pkg.__path__ = [os.path.join(tc_dir, "torchcam")]
    sys.modules["torchcam"] = pkg
    import torchcam.metrics as TM
    return TM


class StandInExtractor:
    """What torch-cam's DeletionInsertionMetric calls on a CAM extractor: the model, a call
    with (class indices, scores) returning a list of [N, H, W] maps, fuse_cams and
    _hooks_off.  It returns the given maps and records the class indices it was asked for."""

    def __init__(self, model, maps):
        self.model = model
        self.maps = torch.from_numpy(maps)
        self.asked = []

    def __call__(self, class_idx=None, scores=None, normalized=True, *, targets=None, **kwargs):
        self.asked.append(class_idx)
        return [self.maps.clone()]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def run_torchcam(TM, model, x, maps, targets, checks, tag):
    N, C, H, W = x.shape
    ext = StandInExtractor(model, maps)
    metric = TM.DeletionInsertionMetric(ext, None, steps=TC_STEPS, baseline=None)
    seen = {}
    original = metric._compute_curves

    def recording(*a, **k):
        r = original(*a, **k)
        seen["ranks"] = a[2]
        seen["curves"] = r
        return r

    metric._compute_curves = recording
    metric.update(x, class_idx=[int(t) for t in targets])
    if ext.asked != [[int(t) for t in targets]]:
        raise RuntimeError("torch-cam asked the extractor for %s" % ext.asked)
    fractions, deletion, insertion = seen["curves"]
    del_auc = torch.trapezoid(deletion, fractions, dim=1)
    ins_auc = torch.trapezoid(insertion, fractions, dim=1)
    worst(checks, "TC %s: sum of per-image deletion AUCs vs the metric's accumulator" % tag,
          abs(float(del_auc.sum()) - metric.deletion), 1e-5)
    worst(checks, "TC %s: sum of per-image insertion AUCs vs the metric's accumulator" % tag,
          abs(float(ins_auc.sum()) - metric.insertion), 1e-5)
    out = {"insertion": [], "deletion": []}
    fr = f32s(fractions)
    for i in range(N):
        out["insertion"].append({"auc": f32(ins_auc[i]), "curve": f32s(insertion[i]), "fractions": fr})
        out["deletion"].append({"auc": f32(del_auc[i]), "curve": f32s(deletion[i]), "fractions": fr})
    # independent: ranks = descending, ties by pixel index; one interior point by a direct forward
    for i in range(N):
        order = desc_order(maps[i])
        ranks = np.empty(H * W, dtype=np.int64)
        ranks[order] = np.arange(H * W)
        if not np.array_equal(seen["ranks"][i].numpy(), ranks):
            raise RuntimeError("TC %s: ranks are not descending-with-ties-by-index, image %d" % (tag, i))
        count = int(round(fractions[3].item() * H * W))
        keep = torch.from_numpy(ranks >= count).reshape(1, 1, H, W)
        with torch.no_grad():
            want = model(torch.where(keep, x[i:i + 1], torch.zeros(1))).numpy()[0, int(targets[i])]
        worst(checks, "TC %s: deletion point 3 vs direct forward (logits), image %d" % (tag, i),
              abs(out["deletion"][i]["curve"][3] - want), 1e-5 * max(1.0, abs(float(want))))
    settings = {"steps": TC_STEPS, "stepSize": (H * W + TC_STEPS - 1) // TC_STEPS, "points": len(fr),
                "baseline": "zeros (baseline=None)", "score": "logits at class_idx = targets[i] (logits_fn=None)",
                "order": "torch.argsort(descending=True, stable=True): ties by pixel index",
                "auc": "torch.trapezoid(curve, fractions)"}
    return out, settings


def run_pgc(model, x, maps, targets, checks, tag):
    from pytorch_grad_cam.metrics.arcc import Complexity
    from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    tg = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    drop = DropInConfidence()(x, maps.copy(), tg, model)
    inc = IncreaseInConfidence()(x, maps.copy(), tg, model)
    cx = Complexity()(maps.copy())
    N = x.shape[0]
    with torch.no_grad():
        p = torch.softmax(model(x), -1).numpy()[np.arange(N), targets].astype(np.float64)
        o = torch.softmax(model(x * torch.from_numpy(maps)[:, None]), -1).numpy()[np.arange(N), targets].astype(np.float64)
    worst(checks, "PGC %s: DropInConfidence vs max(p - o, 0)" % tag, float(np.abs(drop - np.maximum(p - o, 0)).max()), 1e-6)
    if not np.array_equal(inc, np.float32(o > p)):
        raise RuntimeError("PGC IncreaseInConfidence differs from o > p")
    worst(checks, "PGC %s: Complexity vs float64 mean |S|" % tag,
          float(np.abs(cx - np.abs(maps.astype(np.float64)).reshape(N, -1).mean(1)).max()), 1e-6)
    return {"dropInConfidence": f32s(drop), "increaseInConfidence": f32s(inc), "p": f32s(p), "o": f32s(o),
            "complexity": f32s(cx)}


def run_captum(model, x, targets, delta, checks):
    from captum.attr import Saliency
    from captum.metrics import sensitivity_max
    N, C, H, W = x.shape
    S = delta.shape[0]
    # Captum perturbs the batch repeat_interleave'd: row i*S + s is image i, sample s.
    flat = torch.from_numpy(delta).permute(1, 0, 2, 3, 4).reshape(N * S, C, H, W)
    calls = []

    def perturb(inputs, perturb_radius):
        if not torch.equal(inputs, x.repeat_interleave(S, 0)) or perturb_radius != SENS_RADIUS:
            raise RuntimeError("Captum handed perturb_func something else than x repeated")
        calls.append(1)
        return inputs + flat

    sal = Saliency(model)
    value = sensitivity_max(sal.attribute, x, perturb_func=perturb, perturb_radius=SENS_RADIUS,
                            n_perturb_samples=S, norm_ord="fro", target=[int(t) for t in targets], abs=True)
    if len(calls) != 1:
        raise RuntimeError("perturb_func called %d times" % len(calls))
    value = value.detach().numpy()

    def grads(inp, cls):
        inp = inp.clone().requires_grad_(True)
        out = model(inp)
        sel = out[torch.arange(inp.shape[0]), torch.tensor(cls)].sum()
        (g,) = torch.autograd.grad(sel, inp)
        return g.abs().detach().numpy().astype(np.float64)

    phi = grads(x, list(targets))
    phi_p = grads(x.repeat_interleave(S, 0) + flat, [int(t) for t in targets for _ in range(S)]).reshape(N, S, -1)
    norm = np.sqrt((phi.reshape(N, -1) ** 2).sum(1))
    per = np.sqrt(((phi_p - phi.reshape(N, 1, -1)) ** 2).sum(-1)) / norm[:, None]
    worst(checks, "Captum: sensitivity_max vs direct autograd recomputation (max rel)",
          float(np.abs(per.max(1) - value).max() / max(1e-30, float(np.abs(value).max()))), 1e-4)
    return {"sensitivityMax": f32s(value), "explanationNorm": f64s(norm), "perSample": [f64s(r) for r in per],
            "normalizedByExplanationNorm": True, "nPerturbSamples": S, "radius": SENS_RADIUS, "normOrd": "fro",
            "explanation": "captum.attr.Saliency(model).attribute(x, target=targets[i], abs=True): |d logit_c / d x|, [N, C, H, W]",
            "perturbations": "delta.npy [S, N, C, H, W]; perturbed input s of image i = x[i] + delta[s, i] (float32 add)",
            "seed": SENS_SEED}


def run_quantus(model, x, maps, targets, boxes, checks, tag):
    import quantus
    N, H, W = maps.shape
    y = np.asarray(targets)
    masks = np.stack([box_mask(b, H, W) for b in boxes])[:, None]
    common = dict(model=model, x_batch=x.numpy().copy(), y_batch=y, channel_first=True, device="cpu")
    sp = quantus.Sparseness(disable_warnings=True)
    sparse = np.asarray(sp(a_batch=maps[:, None].copy(), s_batch=None, **common), dtype=np.float64)
    pg = quantus.PointingGame(disable_warnings=True)
    hit = np.asarray(pg(a_batch=maps[:, None].copy(), s_batch=masks.copy(), **common), dtype=np.float64)
    # independent definitions: Gini of |S| / max|S| (+1e-7, Quantus's offset), argmax-in-box
    gini = []
    for i in range(N):
        a = np.abs(maps[i].astype(np.float64)).reshape(-1)
        a = a / a.max() + 1e-7
        a = np.sort(a)
        n = a.size
        k = np.arange(1, n + 1)
        gini.append(((2 * k - n - 1) * a).sum() / (n * a.sum()))
    worst(checks, "Quantus %s: Sparseness vs float64 Gini" % tag, float(np.abs(sparse - gini).max()), 1e-5)
    want_hit = [float(np.any((maps[i] == maps[i].max()) & (masks[i, 0] > 0))) for i in range(N)]
    if not np.array_equal(hit, want_hit):
        raise RuntimeError("Quantus %s PointingGame %s vs argmax-in-box %s" % (tag, hit, want_hit))
    return {"sparseness": f32s(sparse), "pointingGame": [float(h) for h in hit]}


# --------------------------------------------------------------------------


def gen_model(name, libs, commits):
    cfg = gcf.MODELS[name]
    model, x_np, _layer, checks = gsw.build(name, cfg, log)
    meta1 = json.load(open(os.path.join(CAM, name, "meta.json")))
    if meta1["input"]["file"] != json.load(open(os.path.join(CAM, "index.json")))["models"][name]["input"]:
        raise RuntimeError("%s: the CAM index and meta disagree on the input" % name)
    if not np.array_equal(np.load(os.path.join(REPO, meta1["input"]["file"])), x_np):
        raise RuntimeError("%s: rebuilt input differs from the committed one" % name)
    onnx_path = os.path.join(REPO, cfg["onnx"])
    om = onnx.load(onnx_path)
    env = onnx_torch.evaluate_numpy(om, x_np)
    x = torch.from_numpy(np.ascontiguousarray(x_np))
    N, C, H, W = x.shape
    targets = [int(t) for t in cfg["targets"]]
    with torch.no_grad():
        logits = model(x).numpy()
    onnx_logits = env[om.graph.output[0].name]
    worst(checks, "ONNX (NumPy float64) vs torch logits, max abs", float(np.abs(onnx_logits - logits).max()),
          1e-5 * max(1.0, float(np.abs(onnx_logits).max())))
    L1 = np.load(os.path.join(CAM, name, "logits.npy"))
    worst(checks, "torch logits vs part-1 logits.npy, max abs", float(np.abs(logits - L1).max()),
          1e-5 * max(1.0, float(np.abs(L1).max())))

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    files = {}
    gradcam = np.load(os.path.join(CAM, name, "GradCAM.npy"))
    maps, ties = make_maps(gradcam, checks)
    files["maps.npy"] = {"shape": save(os.path.join(d, "maps.npy"), maps),
                         "description": "tie-free maps in [0, 1] (every float32 value distinct per image), [N, H, W]",
                         "from": rel(os.path.join(CAM, name, "GradCAM.npy"))}
    files["maps-ties.npy"] = {"shape": save(os.path.join(d, "maps-ties.npy"), ties),
                              "description": "maps with ties: floor(16 clip((u(GradCAM) - 0.2) / 0.8, 0, 1)) / 16, [N, H, W]",
                              "uniqueValuesPerImage": [int(np.unique(t).size) for t in ties],
                              "zeroFractionPerImage": [float((t == 0).mean()) for t in ties]}
    mapsets = {"maps": maps, "maps-ties": ties}
    boxes = make_boxes(maps)
    dump_json(os.path.join(d, "boxes.json"), {"format": "[y0, x0, y1, x1] in input pixels; y0, x0 inclusive, y1, x1 exclusive",
                   "boxes": [[b] for b in boxes],
                   "boxesXYXY": [[[b[1], b[0], b[3], b[2]]] for b in boxes],
                   "note": "one box per image (a list of one); argmax of maps.npy: %s" % (
                       [list(divmod(int(np.argmax(m)), W)) for m in maps])})
    files["boxes.json"] = {"description": "ground-truth boxes per image, a list of boxes each (one here)"}

    meta = {
        "schema": SCHEMA,
        "model": {"file": cfg["onnx"], "sha256": sha256(onnx_path)},
        "input": {"file": meta1["input"]["file"], "shape": [N, C, H, W]},
        "targets": targets,
        "references": {k: {"repo": REFS[k][0], "file": REFS[k][1], "commit": commits[k]} for k in REFS},
        "maps": {k: k + ".npy" for k in MAPSETS},
        "insertion": {}, "deletion": {}, "settings": {},
        "pgc": {}, "quantus": {},
        "files": files, "checks": checks,
    }
    for tag in MAPSETS:
        log("   %s: POLY" % tag)
        r, s = run_poly(model, x, mapsets[tag], targets, checks, tag)
        for kind in r:
            meta[kind].setdefault("polycam", {})[tag] = r[kind]
        meta["settings"]["polycam"] = s
        log("   %s: RISE" % tag)
        r, s = run_rise(libs["rise"], model, x, mapsets[tag], checks, tag)
        for kind in r:
            meta[kind].setdefault("rise", {})[tag] = r[kind]
        meta["settings"]["rise"] = s
        log("   %s: torch-cam" % tag)
        r, s = run_torchcam(libs["tc"], model, x, mapsets[tag], targets, checks, tag)
        for kind in r:
            meta[kind].setdefault("torchcam", {})[tag] = r[kind]
        meta["settings"]["torchcam"] = s
        log("   %s: PGC" % tag)
        meta["pgc"][tag] = run_pgc(model, x, mapsets[tag], targets, checks, tag)
        log("   %s: Quantus" % tag)
        meta["quantus"][tag] = run_quantus(model, x, mapsets[tag], targets, boxes, checks, tag)
    if name in SENSITIVITY:
        log("   Captum")
        rng = np.random.default_rng(SENS_SEED)
        delta = rng.uniform(-SENS_RADIUS, SENS_RADIUS, size=(SENS_SAMPLES, N, C, H, W)).astype(np.float32)
        files["delta.npy"] = {"shape": save(os.path.join(d, "delta.npy"), delta),
                              "description": "Captum perturbations, [S, N, C, H, W], numpy default_rng(%d).uniform(-0.02, 0.02) rounded to float32" % SENS_SEED}
        meta["captum"] = run_captum(model, x, targets, delta, checks)
    dump_json(os.path.join(d, "metrics.json"), meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for k in REFS:
        ap.add_argument("--" + k, required=True, help="a checkout of %s" % REFS[k][0])
    ap.add_argument("--stubs", required=True, help="directory with the ttach.py stand-in (outside the repository)")
    ap.add_argument("--commits", required=True, help="poly=SHA,rise=SHA,tc=SHA,pgc=SHA,captum=SHA,quantus=SHA")
    ap.add_argument("--models", default=",".join(MODELS))
    a = ap.parse_args()
    commits = dict(kv.split("=", 1) for kv in a.commits.split(","))
    if set(commits) != set(REFS):
        raise SystemExit("--commits needs exactly %s" % sorted(REFS))
    for k in ("poly", "pgc", "captum", "quantus"):
        sys.path.insert(0, os.path.abspath(getattr(a, k)))
    sys.path.insert(0, os.path.abspath(a.stubs))
    libs = {"rise": load_rise(os.path.abspath(a.rise)), "tc": load_torchcam(os.path.abspath(a.tc))}
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for name in a.models.split(","):
        log(name)
        gen_model(name, libs, commits)


if __name__ == "__main__":
    main()
