#!/usr/bin/python3
"""Golden outputs of Captum for camgpu's gradient baselines (SPEC section 1, row
"gradient baselines"): Saliency, Input x Gradient, Integrated Gradients, SmoothGrad,
Guided Backprop and Guided Grad-CAM.

Writes test/fixtures/baselines/ (committed).  CI never runs this script: it needs
Captum, which is not a dependency of camgpu and is never vendored or copied into
the repository.  The committed fixtures are what the tests read
(test/baselines-reference.test.ts; test/fixtures/baselines/README.md describes the
files and Captum's behaviour).

Obtaining Captum
----------------
    git clone https://github.com/pytorch/captum /tmp/captum-src
    # or, from a bare mirror (the docs/ tree may hold objects a partial mirror lacks,
    # so take only the package):
    mkdir -p /tmp/captum && git --git-dir=MIRROR archive HEAD captum setup.py | tar -x -C /tmp/captum

Captum 0.8.0 imports with Debian's torch 1.13 / numpy 1.24 and nothing else (no
stubs were needed; matplotlib is imported lazily and never used here).

Run (Debian's Python; no weights are downloaded, no network is needed):

    PYTHONPATH=/tmp/captum /usr/bin/python3 tools/gen_baseline_fixtures.py \\
        --captum-commit $(git -C /tmp/captum-src rev-parse HEAD)    # or the mirror's HEAD
    /usr/bin/python3 tools/gen_baseline_fixtures.py --help

What it does, per model:
  1. builds the torch module Captum runs on, as tools/gen_cam_fixtures.py does (same
     functions): the narrowed torchvision resnet18-w8 rebuilt exactly and checked
     against its committed ONNX file; the Fashion-MNIST models interpreted from ONNX
     by tools/onnx_torch.py (whose Relu nodes are torch.nn.ReLU modules, which
     Captum's GuidedBackprop needs);
  2. checks the committed ONNX file (NumPy float64) against the module's logits;
  3. runs each Captum method with explicit per-image targets (score = the logit) and
     saves its attribution, plus what a float64 reference needs to recompute it: the
     plain input gradient, the gradient at every Integrated-Gradients path point and
     at every SmoothGrad sample (over a small spatial window, to keep the fixtures
     small), the exact SmoothGrad noise Captum drew (recorded from torch.normal), and
     the Grad-CAM layer's activations and gradients;
  4. checks Captum against independent computations here (direct autograd, a float64
     recomputation of IG and SmoothGrad from ALL recorded gradients, a guided-ReLU
     backward written here) and records the errors in meta.json `checks`.
"""

import argparse
import glob
import hashlib
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402  (model building, inputs, save helpers)
import gen_torch_fixtures as gtf  # noqa: E402
import onnx  # noqa: E402
import onnx_torch  # noqa: E402

OUT = os.path.join(REPO, "test", "fixtures", "baselines")

IG_STEPS = 50
IG_METHOD = "riemann_trapezoid"
SG_SIGMA_FRACTION = 0.15
SG_SEED = 20261202  # torch.manual_seed(SG_SEED + i) before image i's NoiseTunnel call

# Per model: module source, ONNX file, input (file + the rows used), explicit targets
# (one per image, all different, not all argmax), Grad-CAM layer, SmoothGrad sample
# count (SPEC says n = 50; the fixtures store every noise tensor, so they use fewer),
# the spatial window [y0, x0, h, w] over which per-step / per-sample gradients are
# kept, and which optional outputs are kept (size budget).
MODELS = {
    "resnet18-w8": {
        "source": ("torchvision", "resnet18"),
        "onnx": "test/fixtures/torch/resnet18-w8.onnx",
        # the committed torch-fixture batch at the model's declared 64x64, rows 0 and 1
        "input": ("file", "test/fixtures/torch/inputs/input-3x3x64x64-seed0.npy", 0, 2),
        "targets": [5, 8],
        "layer": "layer4",
        "sgSamples": 2,
        "window": [28, 28, 8, 8],
        "extra": [],
    },
    "fashion-vgg": {
        "source": ("onnx", None),
        "onnx": "models/fashion-vgg.onnx",
        "card": "models/fashion-vgg.json",
        "input": ("fashion", ["coat", "shirt", "sneaker"]),
        "targets": [4, 6, 9],
        "layer": None,  # the card's targetLayer.module
        "sgSamples": 3,
        "window": [24, 24, 8, 8],
        "extra": ["SmoothGrad-abs", "GuidedGradCam-bilinear"],
        # the CAM fixtures hold this model's layer tensors for the same input and targets
        "camFixture": "test/fixtures/cam/fashion-vgg",
    },
    "fashion-resnet": {
        "source": ("onnx", None),
        "onnx": "models/fashion-resnet.onnx",
        "card": "models/fashion-resnet.json",
        "input": ("fashion", ["coat", "shirt", "sneaker"]),
        "targets": [4, 6, 9],
        "layer": None,
        "sgSamples": 3,
        "window": [24, 24, 8, 8],
        "extra": ["SmoothGrad-abs", "GuidedGradCam-bilinear"],
        "camFixture": "test/fixtures/cam/fashion-resnet",
    },
}


def captum_modules():
    from captum.attr import (GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients, LayerGradCam,
                             NoiseTunnel, Saliency)
    return {"Saliency": Saliency, "InputXGradient": InputXGradient, "IntegratedGradients": IntegratedGradients,
            "NoiseTunnel": NoiseTunnel, "GuidedBackprop": GuidedBackprop, "GuidedGradCam": GuidedGradCam,
            "LayerGradCam": LayerGradCam}


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(1e-30, np.abs(b).max()))


def need(cond, msg):
    if not cond:
        raise RuntimeError(msg)


def recording(fn, store):
    """Wraps a Captum gradient_func so that every gradient it returns is kept."""

    def wrapped(*a, **k):
        grads = fn(*a, **k)
        store.append(tuple(g.detach().clone() for g in grads))
        return grads
    return wrapped


def guided_backprop_independent(model, x, targets):
    """Guided backprop written here (not Captum's hooks): at the output y of every
    nn.ReLU module call, an identity whose backward passes g only where y > 0 and
    g > 0.  (ReLU's own backward already masks by y > 0; doing it twice is harmless.)"""

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            ctx.save_for_backward(y)
            return y.clone()

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * ((y > 0) & (g > 0)).to(g.dtype)

    calls = []

    def hook(_m, _i, out):
        calls.append(1)
        return Guided.apply(out)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        xg = x.clone().requires_grad_(True)
        y = model(xg)
        y[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    finally:
        for h in hooks:
            h.remove()
    model.zero_grad()
    return xg.grad.detach().clone(), len(calls)


def layer_tensors(model, layer_mod, x, targets):
    """Activation and gradient (of sum_i logit[i, targets[i]]) at the layer's forward output."""
    store = {}

    def keep(_m, _i, out):
        out.retain_grad()
        store["a"] = out

    h = layer_mod.register_forward_hook(keep)
    try:
        y = model(x.clone().requires_grad_(True))
        y[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
    finally:
        h.remove()
    model.zero_grad()
    return store["a"].detach().clone(), store["a"].grad.detach().clone()


def gen_model(name, cfg, captum_commit, captum_version, log):
    C = captum_modules()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    for f in glob.glob(os.path.join(d, "*.npy")):
        os.remove(f)
    onnx_path = os.path.join(REPO, cfg["onnx"])
    om = onnx.load(onnx_path)
    checks = {}
    card = json.load(open(os.path.join(REPO, cfg["card"]))) if cfg.get("card") else None

    # -- module (as the CAM fixture generator builds it)
    kind, arch = cfg["source"]
    if kind == "torchvision":
        model, ws = gcf.torchvision_model(arch)
        checks.update(gcf.check_against_committed(name, model, onnx_path, log))
        model_note = ("torch module rebuilt by tools/gen_torch_fixtures.py's build_model/randomize "
                      "(arch %s, weights seed %d); its initializers are bit-identical to the ONNX file. "
                      "torchvision's BasicBlock calls one nn.ReLU(inplace=True) module twice" % (arch, ws))
    else:
        model = onnx_torch.load(onnx_path).eval()
        model_note = ("ONNX graph interpreted as a torch module by tools/onnx_torch.py (one module per node, "
                      "Relu nodes are torch.nn.ReLU modules, identity Scope modules at torch module paths)")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # only input gradients are wanted; parameters' grads are never used
    relus = [k for k, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    layer = cfg["layer"] or card["targetLayer"]["module"]
    layer_mod = model.get_submodule(layer)

    # -- input
    ik = cfg["input"]
    images = None
    if ik[0] == "file":
        in_file = os.path.join(REPO, ik[1])
        full = np.load(in_file)
        x_np = np.ascontiguousarray(full[ik[2]:ik[3]])
        in_slice = {"axis": 0, "start": ik[2], "stop": ik[3], "fileShape": list(full.shape)}
        in_how = ("rows %d..%d of the committed torch-fixture input batch (torch.randn, seed 0, "
                  "gen_torch_fixtures.make_input), used as is" % (ik[2], ik[3] - 1))
    else:
        x_np, images = gcf.fashion_input(card, ik[1])
        in_file = os.path.join(REPO, "test", "fixtures", "cam", "inputs",
                               "fashion-%s-%dx%d.npy" % ("-".join(ik[1]), x_np.shape[2], x_np.shape[3]))
        need(np.array_equal(np.load(in_file), x_np), "%s: the CAM fixtures' input differs from the card recipe" % name)
        in_slice = None
        pre = card["preprocessing"]
        in_how = ("the CAM fixtures' input: examples/fashion PNGs (8-bit grayscale 28x28) as the model card says, "
                  "in float64: p/255, (p - %s)/%s, bilinear half-pixel resize to %dx%d (source coordinates clamped "
                  "to the border), rounded to float32" % (pre["mean"], pre["std"], x_np.shape[2], x_np.shape[3]))
    x = torch.from_numpy(x_np)
    N = x.shape[0]
    H, W = x.shape[2], x.shape[3]
    targets = list(cfg["targets"])
    need(len(targets) == N and len(set(targets)) == N, "targets must differ per image")
    tgt = torch.tensor(targets)

    # -- the committed ONNX at this input
    env = onnx_torch.evaluate_numpy(om, x_np)
    with torch.no_grad():
        logits = model(x).numpy()
        baseline_logits = model(torch.zeros_like(x)).numpy()
    err = float(np.abs(env[om.graph.output[0].name] - logits).max())
    need(err <= 1e-5 * max(1.0, float(np.abs(logits).max())), "%s: ONNX vs torch logits %g" % (name, err))
    checks["onnxNumpyVsTorchLogitsMaxAbs"] = err
    log("   ONNX (NumPy float64) vs torch logits: max abs %.2g" % err)

    # -- plain gradient by direct autograd (independent of Captum)
    xg = x.clone().requires_grad_(True)
    model(xg)[torch.arange(N), tgt].sum().backward()
    g_direct = xg.grad.detach().clone()
    model.zero_grad()

    res = {}
    # -- Saliency (abs=True, Captum's default) and the signed gradient (abs=False)
    sal = C["Saliency"](model)
    res["Saliency"] = sal.attribute(x.clone(), target=targets, abs=True).detach()
    grads = sal.attribute(x.clone(), target=targets, abs=False).detach()
    checks["captumGradientVsDirectAutogradRelErr"] = rel_err(grads, g_direct)
    need(checks["captumGradientVsDirectAutogradRelErr"] <= 1e-6, "Captum's gradient differs from autograd")
    need(torch.equal(res["Saliency"], grads.abs()), "Saliency(abs=True) is not |gradient|")
    res["Saliency-map"] = res["Saliency"].amax(dim=1)

    # -- Input x Gradient
    res["InputXGradient"] = C["InputXGradient"](model).attribute(x.clone(), target=targets).detach()
    checks["inputXGradientVsXTimesGradientRelErr"] = rel_err(res["InputXGradient"], x * grads)

    # -- Integrated Gradients: zero baseline, 50 steps, riemann_trapezoid; every path
    #    point's gradient recorded
    ig = C["IntegratedGradients"](model, multiply_by_inputs=True)
    ig_grads = []
    ig.gradient_func = recording(ig.gradient_func, ig_grads)
    ig_attr, ig_delta = ig.attribute(x.clone(), baselines=None, target=targets, n_steps=IG_STEPS, method=IG_METHOD,
                                     internal_batch_size=None, return_convergence_delta=True)
    res["IntegratedGradients"] = ig_attr.detach()
    need(len(ig_grads) == 1 and len(ig_grads[0]) == 1, "IG: one gradient call expected")
    step_grads = ig_grads[0][0].view(IG_STEPS, N, *x.shape[1:]).numpy().astype(np.float64)  # step-major
    from captum.attr._utils.approximation_methods import approximation_parameters
    sfun, afun = approximation_parameters(IG_METHOD)
    step_sizes, alphas = sfun(IG_STEPS), afun(IG_STEPS)
    w32 = np.asarray(torch.tensor(step_sizes).float().numpy(), dtype=np.float64)
    rebuilt = x_np.astype(np.float64) * np.tensordot(w32, step_grads, axes=(0, 0))
    checks["igFloat64FromAllStepGradientsRelErr"] = rel_err(rebuilt, res["IntegratedGradients"])
    need(checks["igFloat64FromAllStepGradientsRelErr"] <= 1e-5, "IG: float64 rebuild differs")
    true_trap = x_np.astype(np.float64) * np.tensordot(
        np.array([0.5] + [1.0] * (IG_STEPS - 2) + [0.5]) / (IG_STEPS - 1), step_grads, axes=(0, 0))
    checks["igTrueTrapezoidVsCaptumRelErr"] = rel_err(true_trap, res["IntegratedGradients"])
    fx = logits[np.arange(N), targets].astype(np.float64)
    f0 = baseline_logits[np.arange(N), targets].astype(np.float64)
    checks["igDeltaVsSumMinusScoreDiffMaxAbs"] = float(np.abs(
        res["IntegratedGradients"].numpy().astype(np.float64).reshape(N, -1).sum(1) - (fx - f0)
        - ig_delta.numpy()).max())
    # the same path points, gradients recomputed here one step at a time
    k_chk = [0, IG_STEPS // 2, IG_STEPS - 1]
    e = 0.0
    for k in k_chk:
        p = (alphas[k] * x).clone().requires_grad_(True)
        model(p)[torch.arange(N), tgt].sum().backward()
        e = max(e, rel_err(step_grads[k], p.grad))
    model.zero_grad()
    checks["igStepGradientsVsDirectAutogradRelErr"] = e
    need(e <= 1e-5, "IG: recorded step gradients differ from direct autograd")

    # -- SmoothGrad: NoiseTunnel(Saliency), one call per image (Captum's stdevs is one
    #    float per input tensor, SPEC's sigma is per image); noise recorded from torch.normal
    S = cfg["sgSamples"]
    sigmas, seeds = [], []
    noise = np.zeros((N, S) + tuple(x.shape[1:]), dtype=np.float32)
    sg_grads = np.zeros((N, S) + tuple(x.shape[1:]), dtype=np.float32)
    sg = {"SmoothGrad": [], "SmoothGrad-abs": []}
    orig_normal = torch.normal
    for i in range(N):
        xi = x[i:i + 1]
        sigma = SG_SIGMA_FRACTION * (float(xi.max()) - float(xi.min()))
        sigmas.append(sigma)
        seeds.append(SG_SEED + i)
        for variant, absval in (("SmoothGrad", False), ("SmoothGrad-abs", True)):
            drawn, gstore = [], []
            sal_i = C["Saliency"](model)
            sal_i.gradient_func = recording(sal_i.gradient_func, gstore)
            nt = C["NoiseTunnel"](sal_i)

            def rec_normal(*a, **k):
                t = orig_normal(*a, **k)
                drawn.append(t.detach().clone())
                return t
            torch.manual_seed(SG_SEED + i)
            torch.normal = rec_normal
            try:
                out = nt.attribute(xi.clone(), nt_type="smoothgrad", nt_samples=S, nt_samples_batch_size=None,
                                   stdevs=sigma, draw_baseline_from_distrib=False, target=targets[i], abs=absval)
            finally:
                torch.normal = orig_normal
            need(len(drawn) == 1 and drawn[0].shape == (S,) + tuple(x.shape[1:]), "SmoothGrad: one noise draw expected")
            need(len(gstore) == 1, "SmoothGrad: one gradient call expected")
            if variant == "SmoothGrad":
                noise[i] = drawn[0].numpy()
                sg_grads[i] = gstore[0][0].numpy()
            else:
                need(np.array_equal(noise[i], drawn[0].numpy()), "SmoothGrad: same seed, different noise")
                need(np.array_equal(sg_grads[i], gstore[0][0].numpy()), "SmoothGrad: same noise, different gradients")
            sg[variant].append(out.detach()[0])
    res["SmoothGrad"] = torch.stack(sg["SmoothGrad"])
    res["SmoothGrad-abs"] = torch.stack(sg["SmoothGrad-abs"])
    g64 = sg_grads.astype(np.float64)
    checks["smoothGradFloat64FromAllSampleGradientsRelErr"] = rel_err(g64.mean(1), res["SmoothGrad"])
    checks["smoothGradAbsFloat64FromAllSampleGradientsRelErr"] = rel_err(np.abs(g64).mean(1), res["SmoothGrad-abs"])
    need(max(checks["smoothGradFloat64FromAllSampleGradientsRelErr"],
             checks["smoothGradAbsFloat64FromAllSampleGradientsRelErr"]) <= 1e-5, "SmoothGrad: float64 rebuild differs")
    # noise = z * float32(sigma): the sample std of the draw vs sigma
    checks["smoothGradNoiseStdOverSigma"] = [float(noise[i].std() / sigmas[i]) for i in range(N)]
    e = 0.0
    for i in range(N):
        p = (x[i:i + 1] + torch.from_numpy(noise[i])).requires_grad_(True)
        model(p)[:, targets[i]].sum().backward()
        e = max(e, rel_err(sg_grads[i], p.grad))
    model.zero_grad()
    checks["smoothGradSampleGradientsVsDirectAutogradAtXPlusNoiseRelErr"] = e
    need(e <= 1e-5, "SmoothGrad: recorded sample gradients differ from direct autograd at x + noise")

    # -- Guided Backprop
    res["GuidedBackprop"] = C["GuidedBackprop"](model).attribute(x.clone(), target=targets).detach()
    gb_ind, nhooks = guided_backprop_independent(model, x, targets)
    checks["guidedBackpropVsIndependentGuidedReluRelErr"] = rel_err(gb_ind, res["GuidedBackprop"])
    checks["guidedBackpropVsPlainGradientRelDiff"] = rel_err(res["GuidedBackprop"], grads)
    need(checks["guidedBackpropVsIndependentGuidedReluRelErr"] <= 1e-5, "GuidedBackprop differs from the guided ReLU")

    # -- Grad-CAM at the layer and Guided Grad-CAM (Captum's default nearest upsampling;
    #    bilinear = SPEC's up() as an extra on some models)
    A, G = layer_tensors(model, layer_mod, x, targets)
    lgc = C["LayerGradCam"](model, layer_mod).attribute(x.clone(), target=targets, relu_attributions=True,
                                                       attribute_to_layer_input=False).detach()
    A64, G64 = A.numpy().astype(np.float64), G.numpy().astype(np.float64)
    cam64 = np.maximum((G64.mean(axis=(2, 3), keepdims=True) * A64).sum(1, keepdims=True), 0)
    checks["layerGradCamVsFloat64FromLayerTensorsRelErr"] = rel_err(cam64, lgc)
    need(checks["layerGradCamVsFloat64FromLayerTensorsRelErr"] <= 1e-5, "LayerGradCam differs from relu(sum mean(g) A)")
    res["GradCAM-layer"] = lgc
    ggc = C["GuidedGradCam"](model, layer_mod)
    res["GuidedGradCam"] = ggc.attribute(x.clone(), target=targets, interpolate_mode="nearest",
                                         attribute_to_layer_input=False).detach()
    checks["guidedGradCamVsGbpTimesNearestRelErr"] = rel_err(
        res["GuidedBackprop"] * F.interpolate(lgc, (H, W), mode="nearest"), res["GuidedGradCam"])
    if "GuidedGradCam-bilinear" in cfg["extra"]:
        res["GuidedGradCam-bilinear"] = ggc.attribute(x.clone(), target=targets, interpolate_mode="bilinear").detach()
    layer_files = None
    if cfg.get("camFixture"):
        cd = os.path.join(REPO, cfg["camFixture"])
        ca, cg = np.load(os.path.join(cd, "activations.npy")), np.load(os.path.join(cd, "gradients.npy"))
        cmeta = json.load(open(os.path.join(cd, "meta.json")))
        need(cmeta["targets"] == targets and cmeta["layer"]["module"] == layer, "CAM fixture has other targets/layer")
        checks["camFixtureLayerTensorsRelErr"] = max(rel_err(ca, A), rel_err(cg, G))
        need(checks["camFixtureLayerTensorsRelErr"] <= 1e-6, "CAM fixture layer tensors differ")
        layer_files = {"activations": cfg["camFixture"] + "/activations.npy",
                       "gradients": cfg["camFixture"] + "/gradients.npy"}

    # -- write
    files = {}

    def put(fn, arr, desc):
        shape = gcf.save(os.path.join(d, fn), arr.numpy() if torch.is_tensor(arr) else arr)
        files[fn] = {"shape": shape, "description": desc}
        return fn

    y0, x0, wh, ww = cfg["window"]
    win = (slice(None),) * 2 + (slice(y0, y0 + wh), slice(x0, x0 + ww))
    put("logits.npy", logits, "model logits at the input, [N, classes]")
    put("baseline-logits.npy", baseline_logits, "model logits at the zero baseline (an all-zero batch), [N, classes]")
    put("gradients.npy", grads, "Captum Saliency(abs=False): d logit[i, targets[i]] / d x, [N, C, H, W]")
    put("Saliency.npy", res["Saliency"], "Captum Saliency(abs=True) attribution = |gradient|, [N, C, H, W]")
    put("Saliency-map.npy", res["Saliency-map"],
        "max over channels of Saliency.npy (torch amax(dim=1), done here: Captum has no channel reduction), [N, H, W]")
    put("InputXGradient.npy", res["InputXGradient"], "Captum InputXGradient attribution x * gradient, [N, C, H, W]")
    put("IntegratedGradients.npy", res["IntegratedGradients"],
        "Captum IntegratedGradients(multiply_by_inputs=True), zero baseline, n_steps=50, riemann_trapezoid, [N, C, H, W]")
    put("IntegratedGradients-delta.npy", ig_delta.detach(),
        "Captum's convergence delta: sum of the attribution - (f(x) - f(baseline)) per image, float32, [N]")
    put("IntegratedGradients-step-gradients.npy", step_grads[(slice(None),) + win].astype(np.float32),
        "gradient of the target logit at every path point alpha_k * x, k = 0..49, as Captum computed it, over the "
        "spatial window meta.window, [steps, N, C, h, w] (step-major, as Captum batches them)")
    put("SmoothGrad.npy", res["SmoothGrad"], "Captum NoiseTunnel(Saliency), nt_type='smoothgrad', abs=False: mean of "
        "the signed gradients at the noisy inputs, [N, C, H, W]")
    if "SmoothGrad-abs" in cfg["extra"]:
        put("SmoothGrad-abs.npy", res["SmoothGrad-abs"], "same noise, Saliency abs=True (Captum's default for "
            "Saliency): mean of |gradient| at the noisy inputs, [N, C, H, W]")
    put("SmoothGrad-noise.npy", noise, "the exact noise Captum drew (torch.normal, recorded) for image i's call, "
        "added to x[i]: [N, samples, C, H, W]")
    put("SmoothGrad-sample-gradients.npy", sg_grads[(slice(None), slice(None), slice(None), slice(y0, y0 + wh),
                                                     slice(x0, x0 + ww))],
        "gradient at x[i] + noise[i, s] as Captum computed it, over the spatial window meta.window, [N, samples, C, h, w]")
    put("GuidedBackprop.npy", res["GuidedBackprop"], "Captum GuidedBackprop attribution, [N, C, H, W]")
    put("GradCAM-layer.npy", res["GradCAM-layer"], "Captum LayerGradCam(layer).attribute(relu_attributions=True): "
        "relu(sum_k mean_ij(g_k) A_k), NOT normalized, [N, 1, h, w]")
    put("GuidedGradCam.npy", res["GuidedGradCam"], "Captum GuidedGradCam(layer), interpolate_mode='nearest' (its "
        "default): GuidedBackprop * nearest-upsampled GradCAM-layer, [N, C, H, W]")
    if "GuidedGradCam-bilinear" in res:
        put("GuidedGradCam-bilinear.npy", res["GuidedGradCam-bilinear"], "Captum GuidedGradCam(layer), "
            "interpolate_mode='bilinear' (F.interpolate, align_corners unset = False), [N, C, H, W]")
    if layer_files is None:
        layer_files = {"activations": put("layer-activations.npy", A, "activation at the Grad-CAM layer, [N, K, h, w]"),
                       "gradients": put("layer-gradients.npy", G, "gradient of the target logit at the layer, [N, K, h, w]")}
        layer_files = {k: "test/fixtures/baselines/%s/%s" % (name, v) for k, v in layer_files.items()}

    argmax = [int(v) for v in logits.argmax(-1)]
    declared = [dd.dim_param or dd.dim_value for dd in om.graph.input[0].type.tensor_type.shape.dim]
    prefix = gtf.scope_of(layer)
    layer_node = [n for n in om.graph.node if n.name.startswith(prefix)][-1]
    meta = {
        "schema": "camgpu-baseline-fixture/1",
        "name": name,
        "model": {"file": cfg["onnx"], "sha256": gcf.sha256(onnx_path), "declaredInput": declared,
                  "torch": model_note, "card": cfg.get("card"), "reluModules": relus},
        "input": {"file": gcf.rel(in_file), "slice": in_slice, "shape": list(x_np.shape), "dtype": "float32",
                  "layout": "NCHW", "how": in_how, "images": images},
        "targets": targets,
        "targetNames": [gcf.FASHION_CLASSES[c] for c in targets] if card else None,
        "argmax": argmax,
        "score": "logit (pre-softmax): Captum target=list of ints, one per image (torch.gather on the output)",
        "window": {"y0": y0, "x0": x0, "h": wh, "w": ww,
                   "note": "rows y0..y0+h-1, columns x0..x0+w-1 of the input: where per-step / per-sample gradients are kept"},
        "captum": {"repository": "https://github.com/pytorch/captum", "commit": captum_commit,
                   "version": captum_version, "device": "cpu", "torchThreads": torch.get_num_threads(), "stubs": []},
        "methods": {
            "Saliency": {"captum": "Saliency(model).attribute(x, target=targets, abs=True, additional_forward_args=None)",
                         "attribution": "Saliency.npy", "map": "Saliency-map.npy",
                         "mapRule": "max over channels of the abs attribution (done by the generator)"},
            "gradient": {"captum": "Saliency(model).attribute(x, target=targets, abs=False)", "file": "gradients.npy"},
            "InputXGradient": {"captum": "InputXGradient(model).attribute(x, target=targets)",
                               "attribution": "InputXGradient.npy"},
            "IntegratedGradients": {
                "captum": "IntegratedGradients(model, multiply_by_inputs=True).attribute(x, baselines=None, "
                          "target=targets, n_steps=50, method='riemann_trapezoid', internal_batch_size=None, "
                          "return_convergence_delta=True)",
                "attribution": "IntegratedGradients.npy", "delta": "IntegratedGradients-delta.npy",
                "stepGradients": "IntegratedGradients-step-gradients.npy",
                "baseline": "0 (baselines=None: Captum's default, a scalar zero)",
                "nSteps": IG_STEPS, "method": IG_METHOD,
                "captumDefaultMethod": "gausslegendre",
                "methodNote": ("Captum's default method is 'gausslegendre'; SPEC section 1 picks the trapezoid, so the "
                               "fixture passes method='riemann_trapezoid'"),
                "alphas": [float(a) for a in alphas],
                "stepSizes": [float(v) for v in w32],
                "stepRule": ("alphas = torch.linspace(0, 1, 50) (float32 values); step sizes 1/50 each, the first "
                             "and last halved (sum 49/50, not 1): attribution = x * sum_k w_k grad(alpha_k x)"),
                "internalBatch": "one forward/backward over all 50 x N path points, step-major ([k*N + i])",
            },
            "SmoothGrad": {
                "captum": ("NoiseTunnel(Saliency(model)).attribute(x[i:i+1], nt_type='smoothgrad', nt_samples=S, "
                           "nt_samples_batch_size=None, stdevs=sigma[i], draw_baseline_from_distrib=False, "
                           "target=targets[i], abs=False), one call per image after torch.manual_seed(seeds[i])"),
                "attribution": "SmoothGrad.npy",
                "attributionAbs": "SmoothGrad-abs.npy" if "SmoothGrad-abs" in res and "SmoothGrad-abs.npy" in files else None,
                "absVariant": "the same calls with abs=True (same seed, same noise, checked)",
                "which": ("SmoothGrad of the signed gradient (Saliency abs=False), as SPEC's 'SmoothGrad of the "
                          "gradient'; the abs variant averages |gradient| (Captum Saliency's default abs=True)"),
                "ntType": "smoothgrad", "ntSamples": S, "specSamples": 50,
                "samplesNote": ("SPEC says n = 50; the fixture uses %d samples per image because it stores every "
                                "noise tensor (the averaging rule does not depend on n)" % S),
                "sigmaFraction": SG_SIGMA_FRACTION,
                "sigmaRule": "sigma[i] = 0.15 * (max x[i] - min x[i]) over all of image i's values, as a Python float",
                "sigma": sigmas,
                "sigmaFloat32": [float(np.float32(v)) for v in sigmas],
                "seeds": seeds,
                "noise": "SmoothGrad-noise.npy",
                "noiseRule": ("torch.normal(0, std) with std = torch.tensor(sigma) (float32) repeated to "
                              "[S, C, H, W]: torch draws z ~ N(0, 1) and returns z * float32(sigma); the noisy batch "
                              "is x[i] repeated S times + noise (float32)"),
                "sampleGradients": "SmoothGrad-sample-gradients.npy",
                "average": "sum over the S samples (float32) then / S",
            },
            "GuidedBackprop": {"captum": "GuidedBackprop(model).attribute(x, target=targets)",
                               "attribution": "GuidedBackprop.npy",
                               "rule": ("backward hook on every torch.nn.ReLU module call: the gradient w.r.t. the "
                                        "ReLU input (already masked by x > 0) is replaced by relu() of itself"),
                               "reluModules": len(relus), "reluCallsPerForward": nhooks},
            "GuidedGradCam": {
                "captum": ("GuidedGradCam(model, layer).attribute(x, target=targets, interpolate_mode='nearest', "
                           "attribute_to_layer_input=False)"),
                "attribution": "GuidedGradCam.npy",
                "attributionBilinear": "GuidedGradCam-bilinear.npy" if "GuidedGradCam-bilinear" in res else None,
                "layerGradCam": "GradCAM-layer.npy",
                "camRule": "relu(sum_k mean_ij(g_k) * A_k) at the layer output: relu yes, no normalization",
                "interpolateMode": "nearest", "alignCorners": None,
                "interpolateNote": ("LayerAttribution.interpolate = F.interpolate(cam, (H, W), mode) with no "
                                    "align_corners argument; 'nearest' is torch's legacy nearest (source index "
                                    "floor(dst * in / out)); SPEC section 0's up() is bilinear half-pixel"),
                "layerTensors": layer_files,
            },
        },
        "layer": {"module": layer, "onnxNode": layer_node.name, "onnxTensor": layer_node.output[0],
                  "shape": list(A.shape)},
        "inputSize": [int(H), int(W)],
        "checks": checks,
        "files": dict(sorted(files.items())),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "onnx": onnx.__version__,
                     "python": sys.version.split()[0]},
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log("   targets %s (argmax %s); layer %s %s; %d ReLU modules" % (targets, argmax, layer, list(A.shape), len(relus)))
    log("   checks: %s" % json.dumps(checks))
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of %s" % ",".join(MODELS))
    ap.add_argument("--captum-commit", required=True, help="commit of the Captum source on PYTHONPATH (recorded)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import captum
    src = os.path.dirname(os.path.dirname(os.path.abspath(captum.__file__)))
    if os.path.abspath(src).startswith(REPO):
        sys.exit("refusing to run Captum from inside the repository")
    version = getattr(captum, "__version__", None)
    print("Captum from %s (version %s, commit %s)" % (src, version, args.captum_commit))
    index = {"captum": {"commit": args.captum_commit, "version": version}, "models": {}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(name)
        meta = gen_model(name, MODELS[name], args.captum_commit, version, print)
        index["models"][name] = {"meta": name + "/meta.json", "layer": meta["layer"]["module"],
                                 "input": meta["input"]["file"], "targets": meta["targets"]}
    ipath = os.path.join(OUT, "index.json")
    if os.path.exists(ipath) and args.models != ",".join(MODELS):
        old = json.load(open(ipath))
        old["models"].update(index["models"])
        old["captum"] = index["captum"]
        index = old
    with open(ipath, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
    total = 0
    for root, _, fns in os.walk(OUT):
        for fn in fns:
            total += os.path.getsize(os.path.join(root, fn))
    print("total %.2f MB under %s" % (total / 1e6, gcf.rel(OUT)))


if __name__ == "__main__":
    main()
