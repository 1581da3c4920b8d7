#!/usr/bin/python3
"""Golden outputs of the perturbation ("sweep") CAMs for camgpu: Score-CAM and
Ablation-CAM from pytorch-grad-cam (PGC), Score-CAM, SS-CAM and IS-CAM from
torch-cam (TC).

Writes, next to the part-1 fixtures of tools/gen_cam_fixtures.py, into
test/fixtures/cam/<model>/: `sweeps.json` (this script's meta data) and the files it
lists; plus test/fixtures/cam/sweeps.json (the index).  CI never runs this script:
it needs PGC and TC, which camgpu never vendors or copies.  The committed fixtures are
what test/sweeps-reference.test.ts reads; test/fixtures/cam/README.md ("Sweep methods")
describes the files and every library quirk found while making them.

Obtaining the libraries
-----------------------
    git clone https://github.com/jacobgil/pytorch-grad-cam /tmp/pgc
    git clone https://github.com/frgfm/torch-cam /tmp/tc
    # or, from bare mirrors:
    #   git --git-dir=MIRROR archive HEAD pytorch_grad_cam setup.py | tar -x -C /tmp/pgc
    #   git --git-dir=MIRROR archive HEAD torchcam pyproject.toml | tar -x -C /tmp/tc

Stand-ins, in a directory OUTSIDE the repository (say /tmp/stubs):
  * `ttach.py` exactly as tools/gen_cam_fixtures.py describes (PGC imports it);
  * `torchcam-<version>.dist-info/METADATA` with the two lines `Name: torchcam` and
    `Version: <version from TC's pyproject.toml>`: TC's `__init__` asks
    importlib.metadata for its own version, which an uninstalled checkout lacks.
TC needs Python >= 3.11 (typing.Self); Debian's torch 1.13 runs it.

Run (Debian's Python, CPU, one torch thread; no network, no weights downloaded):

    PYTHONPATH=/tmp/pgc:/tmp/tc:/tmp/stubs /usr/bin/python3 tools/gen_cam_fixtures_sweeps.py \\
        --pgc-commit $(git -C /tmp/pgc rev-parse HEAD) --tc-commit $(git -C /tmp/tc rev-parse HEAD)

Per model (the part-1 fixture's model, input, layer and explicit targets; the part-1
fixtures must exist: their activations and logits are checked, not rewritten):
  1. rebuilds the torch module exactly as tools/gen_cam_fixtures.py does (and its checks
     against the committed ONNX file), loads the committed input, and checks PGC's
     hooked activation and the logits against the part-1 activations.npy / logits.npy;
  2. runs PGC ScoreCAM (batch size: PGC's default) and AblationCAM (batch 32) with
     ClassifierOutputTarget(targets[i]) per image -- subclassed only to record every
     score it returns --, and keeps the channel weights they computed inside their one
     call (no second sweep), the raw map, PGC's low-res map and its final map, asserting
     that PGC's own finishing of the raw map reproduces its final map exactly;
  3. runs TC ScoreCAM, SSCAM (n = 35, std 2.0) and ISCAM (n = 10) with class_idx =
     targets, recording every score TC selects (its `_select_scores`, wrapped on the
     instance) and, for SSCAM, feeding noise from camgpu's counter-based generator
     (src/ops/random.ts randomRef: PCG hash + Box-Muller) through TC's own sampler
     attribute `_distrib`, so a GPU implementation fed the same seed gets the same noise;
  4. checks what was read in the libraries' code by recomputing it independently:
     masks, masked inputs (a forward pre-hook records what each model call received),
     scores by direct forwards, softmax weights, the ablation by a zeroing forward hook,
     TC's IS-CAM coefficient schedule measured on the model inputs.
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import gen_cam_fixtures as gcf  # noqa: E402  (models, inputs, save/rel helpers)
import gen_torch_fixtures as gtf  # noqa: E402
import onnx  # noqa: E402
import onnx_torch  # noqa: E402

OUT = gcf.OUT
SCHEMA = "camgpu-cam-sweeps-fixture/1"

# Which library methods run on which model (all four models run everything; the
# input-size maps and the recorded model inputs, which cost N*H*W*4 bytes each, are kept
# only for the 56x56 Fashion models: the low-res maps determine the final ones).
MODELS = ["resnet18-w8", "vgg16-w8", "fashion-vgg", "fashion-resnet"]
FULL_RES = {"fashion-vgg", "fashion-resnet"}

PGC_ABLATION_BATCH = 32          # AblationCAM's constructor default, passed explicitly
TC_BATCH = 32                    # TC's constructor default (ScoreCAM, SSCAM, ISCAM)
SS_SAMPLES, SS_STD = 35, 2.0     # SPEC section 1 (= TC's defaults)
IS_SAMPLES = 10                  # SPEC section 1 (= TC's default)
# camgpu's seeded generator for the SS-CAM noise: sample i of the n draws is stream i.
SS_NOISE_SEED = 0x55CA
NOISE_CHECK_ELEMS = 1024         # first and last elements of a row kept as a check


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------
# camgpu's counter-based generator (src/shaders/random.ts, src/ops/random.ts)
# --------------------------------------------------------------------------


def pcg_hash(v):
    v = np.asarray(v, dtype=np.uint32)
    with np.errstate(over="ignore"):
        s = v * np.uint32(747796405) + np.uint32(2891336453)
        w = ((s >> ((s >> np.uint32(28)) + np.uint32(4))) ^ s) * np.uint32(277803737)
    return (w >> np.uint32(22)) ^ w


def camgpu_normal(rows, per_row, seed, stream, mean, std):
    """randomRef(rows, perRow, {dist: 'normal', seed, stream, a: mean, b: std}) in float64:
    element e of row r is mean + std*sqrt(-2 ln u1)*cos(2 pi u2), u1 = unit(h(key ^ 2e)),
    u2 = unit(h(key ^ (2e+1))), key = h(h(seed ^ h(stream)) ^ rows[r]), unit(h) =
    ((h >> 8) + 0.5) / 2^24."""
    e = np.arange(per_row, dtype=np.uint32)
    out = np.empty((len(rows), per_row), dtype=np.float64)
    inner = pcg_hash(np.uint32(seed) ^ pcg_hash(np.uint32(stream)))
    for i, r in enumerate(rows):
        key = pcg_hash(inner ^ np.uint32(r))
        u1 = ((pcg_hash(key ^ (np.uint32(2) * e)) >> np.uint32(8)).astype(np.float64) + 0.5) / 16777216.0
        u2 = ((pcg_hash(key ^ (np.uint32(2) * e + np.uint32(1))) >> np.uint32(8)).astype(np.float64) + 0.5) / 16777216.0
        out[i] = mean + std * np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    return out


class CamgpuNormal:
    """Stands in for TC's `self._distrib` (a torch Normal(0, std)): `sample(size)` returns
    camgpu's generator's values for draw i = stream i, size [N, K, H, W], image n = row n,
    element e = the channel-major index within the image ((k*H + y)*W + x), float32."""

    def __init__(self, seed, std):
        self.seed, self.std, self.calls, self.sizes = seed, std, 0, []

    def sample(self, size):
        size = tuple(int(s) for s in size)
        per = int(np.prod(size[1:]))
        v = camgpu_normal(range(size[0]), per, self.seed, self.calls, 0.0, self.std)
        self.calls += 1
        self.sizes.append(list(size))
        return torch.from_numpy(v.astype(np.float32).reshape(size))


# --------------------------------------------------------------------------
# Recorders
# --------------------------------------------------------------------------


class InputRecorder:
    """Forward pre-hook on the whole model: numbers the rows (images) of every call in
    call order and keeps a copy of those whose number is in `want` (TC reuses one buffer
    for every chunk, hence the copies)."""

    def __init__(self, model, want):
        self.rows, self.want, self.seen = {}, set(want), 0
        self.h = model.register_forward_pre_hook(self.hook)

    def hook(self, _m, inp):
        for r in inp[0]:
            if self.seen in self.want:
                self.rows[self.seen] = r.detach().clone()
            self.seen += 1

    def get(self, idx):
        return torch.stack([self.rows[i] for i in idx])

    def remove(self):
        self.h.remove()


def recording_target_class(pt):
    class RecordingTarget(pt.ClassifierOutputTarget):
        """PGC's ClassifierOutputTarget(c), recording every value it returns."""

        def __init__(self, category):
            super().__init__(category)
            self.values = []

        def __call__(self, model_output):
            v = super().__call__(model_output)
            self.values.append(float(v.detach().reshape(())))
            return v
    return RecordingTarget


# --------------------------------------------------------------------------
# Independent recomputations (float32, as the libraries compute)
# --------------------------------------------------------------------------


def minmax(t, eps):
    """(t - min)/(max - min + eps) over the last two axes."""
    flat = t.flatten(-2)
    mn = flat.min(-1).values[..., None, None]
    mx = flat.max(-1).values[..., None, None]
    return (t - mn) / (mx - mn + eps)


def pgc_masks(acts, H, W):
    """PGC ScoreCAM's rule as read: u(up(A_k)) with align_corners=True, eps 1e-8."""
    up = F.interpolate(torch.from_numpy(acts), size=(H, W), mode="bilinear", align_corners=True)
    return minmax(up, 1e-8)


def tc_masks(acts, H, W):
    """TC ScoreCAM's rule as read: up(u(A_k)) with align_corners=False, eps 1e-8."""
    return F.interpolate(minmax(torch.from_numpy(acts), 1e-8), size=(H, W), mode="bilinear", align_corners=False)


def forward_scores(model, x_rows, cls, batch=64):
    """Logit of class cls[i] for each row of x_rows."""
    out = []
    with torch.no_grad():
        for i in range(0, x_rows.shape[0], batch):
            y = model(x_rows[i:i + batch])
            out.append(y[torch.arange(y.shape[0]), torch.as_tensor(cls[i:i + batch])])
    return torch.cat(out).numpy()


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def softmax(s):
    s = np.asarray(s, dtype=np.float64)
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------
# PGC
# --------------------------------------------------------------------------


def run_pgc(P, BaseCAM, pimage, pt, cls_name, model, layer_mod, x, targets, ctor):
    """One PGC call. The weights PGC computed inside it are kept (get_cam_weights wrapped
    on the instance) and the raw map is PGC's get_cam_image fed those weights back."""
    RT = recording_target_class(pt)
    cam = getattr(P, cls_name)(model=model, target_layers=[layer_mod], **ctor)
    objs = [RT(int(c)) for c in targets]
    kept = {}
    orig = cam.get_cam_weights

    def keep(*a, **k):
        if "w" not in kept:
            kept["w"] = orig(*a, **k)
        return kept["w"]
    cam.get_cam_weights = keep
    try:
        final = cam(input_tensor=x, targets=objs, aug_smooth=False, eigen_smooth=False)
        acts = gcf.as_np(cam.activations_and_grads.activations[0])
        logits = gcf.as_np(cam.outputs)
        raw = BaseCAM.get_cam_image(cam, x, layer_mod, objs, acts, None, False)
        lowres = pimage.scale_cam_image(np.maximum(raw, 0))
        size = cam.get_target_width_height(x)
        again = cam.aggregate_multi_layers([pimage.scale_cam_image(np.maximum(raw, 0), size)[:, None, :]])
        batch = getattr(cam, "batch_size", None)
    finally:
        cam.activations_and_grads.release()
    if not np.array_equal(again, final):
        raise RuntimeError("%s: PGC's finishing of its raw map does not reproduce its final map" % cls_name)
    return {"final": final, "acts": acts, "logits": logits, "raw": raw, "weights": kept["w"],
            "lowres": lowres, "values": [o.values for o in objs], "batch_attr": batch}


def pgc_scorecam(P, BaseCAM, pimage, pt, model, layer_mod, x, targets, record, checks):
    N, K = x.shape[0], record
    # rows: the activation pass on x (N), then image n channel k at N + n*K + k; keep image 0
    rec = InputRecorder(model, range(N, N + K)) if record else None
    try:
        r = run_pgc(P, BaseCAM, pimage, pt, "ScoreCAM", model, layer_mod, x, targets, {})
    finally:
        if rec:
            rec.remove()
    K = r["acts"].shape[1]
    if record and record != K:
        raise RuntimeError("ScoreCAM: channel count")
    vals = np.asarray(r["values"], dtype=np.float32)           # [N, K]: targets are called only by the sweep
    if vals.shape != (N, K):
        raise RuntimeError("ScoreCAM: expected %d scores per image, got %s" % (K, vals.shape))
    w_ours = softmax(vals)
    checks["scoreCamSoftmaxOfScoresVsPgcWeightsMaxAbs"] = float(np.abs(w_ours - r["weights"]).max())
    if checks["scoreCamSoftmaxOfScoresVsPgcWeightsMaxAbs"] > 1e-6:
        raise RuntimeError("ScoreCAM: softmax of the recorded scores is not PGC's weights")
    H, W = x.shape[2], x.shape[3]
    masks = pgc_masks(r["acts"], H, W)                          # [N, K, H, W]
    masked = (x[:, None] * masks[:, :, None]).reshape(N * K, *x.shape[1:])
    direct = forward_scores(model, masked, np.repeat(targets, K)).reshape(N, K)
    checks["scoreCamDirectScoresVsPgcRelErr"] = rel_err(direct, vals)
    if checks["scoreCamDirectScoresVsPgcRelErr"] > 1e-5:
        raise RuntimeError("ScoreCAM: u(up_ac(A)) masks on x do not give PGC's scores")
    # the same masks with align_corners=False (camgpu's default) score differently
    m2 = F.interpolate(torch.from_numpy(r["acts"]), size=(H, W), mode="bilinear", align_corners=False)
    d2 = forward_scores(model, (x[:, None] * minmax(m2, 1e-8)[:, :, None]).reshape(N * K, *x.shape[1:]),
                        np.repeat(targets, K)).reshape(N, K)
    checks["scoreCamAlignCornersFalseScoresRelDiff"] = rel_err(d2, vals)
    rows = None
    if rec:
        got = rec.get(range(N, N + K))
        e = float((got - masked[:K]).abs().max())
        checks["scoreCamRecordedInputsVsMaskedInputMaxAbs"] = e
        if e > 1e-6:
            raise RuntimeError("ScoreCAM: PGC's model inputs are not x * u(up_ac(A_k))")
        rows = got
    r["scores"] = vals
    r["direct"] = direct
    r["rows"] = rows
    return r


def pgc_ablationcam(P, BaseCAM, pimage, pt, model, layer_mod, x, targets, logits, checks, notes):
    N = x.shape[0]
    r = run_pgc(P, BaseCAM, pimage, pt, "AblationCAM", model, layer_mod, x, targets,
                {"batch_size": PGC_ABLATION_BATCH, "ratio_channels_to_ablate": 1.0})
    K = r["acts"].shape[1]
    orig = np.asarray([v[0] for v in r["values"]], dtype=np.float32)  # its no_grad forward of x
    abl = np.asarray([v[1:] for v in r["values"]], dtype=np.float32)  # [N, K], channel order
    if abl.shape != (N, K):
        raise RuntimeError("AblationCAM: expected 1 + %d scores per image" % K)
    y = logits[np.arange(N), targets].astype(np.float32)
    checks["ablationOriginalScoreVsLogitsMaxAbs"] = float(np.abs(orig - y).max())
    w_ours = (orig[:, None].astype(np.float64) - abl) / orig[:, None]
    checks["ablationFormulaVsPgcWeightsRelErr"] = rel_err(w_ours, r["weights"])
    if checks["ablationFormulaVsPgcWeightsRelErr"] > 1e-5:
        raise RuntimeError("AblationCAM: (y - y_k)/y is not PGC's weights")
    # PGC's AblationLayer sets the channel to 0 when the minimum of its (repeated) cached
    # activation is exactly 0, else to min - 1e7 (cumulatively, see README): which branch ran?
    mins = [float(r["acts"][n].min()) for n in range(N)]
    notes["ablationImageMinActivation"] = mins
    notes["ablationBranch"] = ["zero" if m == 0.0 else "min - 1e7 (cumulative within a batch)" for m in mins]
    # Independent: a forward hook zeroing channel k of the layer output.
    direct = np.zeros((N, K), dtype=np.float32)
    state = {}

    def zero(_m, _i, out):
        out = out.clone()
        out[torch.arange(out.shape[0]), torch.as_tensor(state["ks"])] = 0
        return out
    h = layer_mod.register_forward_hook(zero)
    try:
        with torch.no_grad():
            for n in range(N):
                for k0 in range(0, K, 64):
                    ks = list(range(k0, min(K, k0 + 64)))
                    state["ks"] = ks
                    yy = model(x[n:n + 1].repeat(len(ks), 1, 1, 1))
                    direct[n, ks] = yy[:, targets[n]].numpy()
    finally:
        h.remove()
    checks["ablationZeroHookScoresVsPgcRelErr"] = rel_err(direct, abl)
    if all(b == "zero" for b in notes["ablationBranch"]) and checks["ablationZeroHookScoresVsPgcRelErr"] > 1e-5:
        raise RuntimeError("AblationCAM: zeroing channel k does not give PGC's ablated scores")
    r["scores"] = abl
    r["original"] = orig
    return r


# --------------------------------------------------------------------------
# TC
# --------------------------------------------------------------------------


def run_tc(TC, cls_name, model, layer, x, targets, ctor, want=(), noise=None):
    """One TC extractor: forward x with hooks on (as TC's docs do), then call it with
    class_idx = targets. Every score TC selects is recorded in call order; the weights
    it computed are kept and fed back to its compute_cams for the raw map."""
    N = x.shape[0]
    ext = getattr(TC, cls_name)(model, target_layer=layer, input_shape=tuple(x.shape[1:]), **ctor)
    calls = []
    sel = ext._select_scores

    def select(output, sample_indices, class_idx, targets_):
        v = sel(output, sample_indices, class_idx, targets_)
        calls.append((sample_indices.clone(), v.detach().clone()))
        return v
    ext._select_scores = select
    if noise is not None:
        ext._distrib = noise
    kept = {}
    orig_w = ext._get_weights

    def keepw(*a, **k):
        if "w" not in kept:
            kept["w"] = orig_w(*a, **k)
        return kept["w"]
    ext._get_weights = keepw
    rec = None
    try:
        with torch.no_grad():
            logits = model(x)
        acts = ext.hook_a[0].clone()
        inp = ext._input.clone()
        # rows after the user's forward: TC's baseline forward of x (N), then pass i,
        # image n, channel k at N + (i*N + n)*K + k
        rec = InputRecorder(model, want) if want else None
        final = ext(class_idx=[int(c) for c in targets])[0]
        if rec:
            rec.remove()
        relu = ext._relu
        ext._relu = False
        raw = ext.compute_cams([int(c) for c in targets], normalized=False)[0]
        ext._relu = relu
        again = ext._normalize(F.relu(raw.clone()))
    finally:
        ext.remove_hooks()
    if not torch.equal(again, final):
        raise RuntimeError("TC %s: _normalize(relu(raw)) does not reproduce its map" % cls_name)
    if not torch.equal(inp, x):
        raise RuntimeError("TC %s: the stored input is not the input" % cls_name)
    base_idx, base = calls[0]
    if not torch.equal(base_idx, torch.arange(N)):
        raise RuntimeError("TC %s: first selection is not the baseline" % cls_name)
    per_pass = torch.cat([v for _, v in calls[1:]]).numpy()
    idx = torch.cat([i for i, _ in calls[1:]]).numpy()
    K = acts.shape[1]
    passes = per_pass.shape[0] // (N * K)
    if passes * N * K != per_pass.shape[0] or not np.array_equal(idx, np.tile(np.repeat(np.arange(N), K), passes)):
        raise RuntimeError("TC %s: unexpected score order" % cls_name)
    return {"final": final.numpy(), "raw": raw.numpy(), "weights": kept["w"][0].numpy(), "acts": acts.numpy(),
            "logits": logits.numpy(), "baseline": base.numpy(), "scores": per_pass.reshape(passes, N, K),
            "rec": rec, "repr": repr(ext)}


def tc_methods(TC, model, layer, x, targets, K, full_res, checks, notes):
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    out = {}
    tgt = np.asarray(targets)
    row = lambda i, n, k: N + (i * N + n) * K + k  # noqa: E731  (see run_tc)

    # -- ScoreCAM
    r = run_tc(TC, "ScoreCAM", model, layer, x, targets, {"batch_size": TC_BATCH},
               want=[row(0, 0, k) for k in range(K)] if full_res else ())
    s = r["scores"][0]
    w = softmax(s - r["baseline"][:, None])
    checks["tcScoreCamSoftmaxVsWeightsMaxAbs"] = float(np.abs(w - r["weights"]).max())
    checks["tcScoreCamNoBaselineSoftmaxVsWeightsMaxAbs"] = float(np.abs(softmax(s) - r["weights"]).max())
    masks = tc_masks(r["acts"], H, W)
    masked = (x[:, None] * masks[:, :, None]).reshape(N * K, *x.shape[1:])
    direct = forward_scores(model, masked, np.repeat(tgt, K)).reshape(N, K)
    checks["tcScoreCamDirectScoresRelErr"] = rel_err(direct, s)
    if checks["tcScoreCamDirectScoresRelErr"] > 1e-5 or checks["tcScoreCamSoftmaxVsWeightsMaxAbs"] > 1e-6:
        raise RuntimeError("TC ScoreCAM: up(u(A)) masks / softmax(s - y) do not give TC's scores / weights")
    r["rows"] = None
    if full_res:
        got = r["rec"].get([row(0, 0, k) for k in range(K)])
        e = float((got - masked[:K]).abs().max())
        checks["tcScoreCamRecordedInputsVsMaskedInputMaxAbs"] = e
        if e > 1e-6:
            raise RuntimeError("TC ScoreCAM: model inputs are not x * up(u(A_k))")
        r["rows"] = got
    out["ScoreCAM"] = r

    # -- ISCAM
    probe = list(range(min(K, 8)))                         # image 0, a few channels, every step
    r = run_tc(TC, "ISCAM", model, layer, x, targets, {"batch_size": TC_BATCH, "num_samples": IS_SAMPLES},
               want=[row(i, 0, k) for i in range(IS_SAMPLES) for k in probe])
    s = r["scores"]                                          # [n, N, K]
    if s.shape[0] != IS_SAMPLES:
        raise RuntimeError("TC ISCAM: %d passes" % s.shape[0])
    w = softmax((s - r["baseline"][None, :, None]).mean(0))
    checks["tcIsCamMeanMinusBaselineSoftmaxVsWeightsMaxAbs"] = float(np.abs(w - r["weights"]).max())
    if checks["tcIsCamMeanMinusBaselineSoftmaxVsWeightsMaxAbs"] > 1e-6:
        raise RuntimeError("TC ISCAM: softmax(mean_i(s_i - y)) is not TC's weights")
    # the coefficient of each step, measured on what the model received
    base = masked[:K][probe].double()
    coeffs = []
    for i in range(IS_SAMPLES):
        got = r["rec"].get([row(i, 0, k) for k in probe]).double()
        c = ((got * base).sum() / (base * base).sum()).item()
        coeffs.append(c)
        resid = float((got - c * base).abs().max())
        if resid > 1e-5 * float(got.abs().max()):
            raise RuntimeError("TC ISCAM: step %d input is not a multiple of x * M_k" % i)
    notes["tcIsCamMeasuredCoefficients"] = coeffs
    want = np.cumsum(np.arange(1, IS_SAMPLES + 1) / IS_SAMPLES)
    checks["tcIsCamCoefficientsVsCumulativeMaxAbs"] = float(np.abs(np.asarray(coeffs) - want).max())
    if checks["tcIsCamCoefficientsVsCumulativeMaxAbs"] > 1e-5:
        raise RuntimeError("TC ISCAM: coefficients are not cumsum(i/n)")
    d = np.stack([forward_scores(model, float(c) * masked, np.repeat(tgt, K)).reshape(N, K) for c in want])
    checks["tcIsCamDirectScoresRelErr"] = rel_err(d, s)
    if checks["tcIsCamDirectScoresRelErr"] > 1e-5:
        raise RuntimeError("TC ISCAM: direct scores differ")
    out["ISCAM"] = r

    # -- SSCAM
    noise = CamgpuNormal(SS_NOISE_SEED, SS_STD)
    r = run_tc(TC, "SSCAM", model, layer, x, targets,
               {"batch_size": TC_BATCH, "num_samples": SS_SAMPLES, "std": SS_STD},
               want=[row(0, 0, k) for k in range(K)], noise=noise)
    if noise.calls != SS_SAMPLES or any(sz != [N, K, H, W] for sz in noise.sizes):
        raise RuntimeError("TC SSCAM: expected %d draws of [N, K, H, W], got %s" % (SS_SAMPLES, noise.sizes))
    s = r["scores"]
    if s.shape[0] != SS_SAMPLES:
        raise RuntimeError("TC SSCAM: %d passes" % s.shape[0])
    w = softmax((s - r["baseline"][None, :, None]).mean(0))
    checks["tcSsCamMeanMinusBaselineSoftmaxVsWeightsMaxAbs"] = float(np.abs(w - r["weights"]).max())
    if checks["tcSsCamMeanMinusBaselineSoftmaxVsWeightsMaxAbs"] > 1e-6:
        raise RuntimeError("TC SSCAM: softmax(mean_i(s_i - y)) is not TC's weights")
    # direct scores for draws 0 and n-1: x * (up(u(A_k)) + noise)
    errs = []
    for i in (0, SS_SAMPLES - 1):
        nz = camgpu_normal(range(N), K * H * W, SS_NOISE_SEED, i, 0.0, SS_STD).astype(np.float32).reshape(N, K, H, W)
        xm = (x[:, None] * (masks + torch.from_numpy(nz))[:, :, None]).reshape(N * K, *x.shape[1:])
        errs.append(rel_err(forward_scores(model, xm, np.repeat(tgt, K)).reshape(N, K), s[i]))
        if i == 0:
            got = r["rec"].get([row(0, 0, k) for k in range(K)])
            e = float((got - xm[:K]).abs().max())
            checks["tcSsCamRecordedInputsVsNoisyMaskedInputMaxAbs"] = e
            if e > 1e-5:
                raise RuntimeError("TC SSCAM: model inputs are not x * (up(u(A_k)) + noise)")
            r["rows"] = got if full_res else None
    checks["tcSsCamDirectScoresRelErr"] = max(errs)
    if checks["tcSsCamDirectScoresRelErr"] > 1e-5:
        raise RuntimeError("TC SSCAM: direct scores with camgpu's noise differ")
    # a slice of the noise as drawn: rows 0 and N-1 of draws 0 and n-1, first/last elements
    per = K * H * W
    sl = []
    for i in (0, SS_SAMPLES - 1):
        v = camgpu_normal([0, N - 1], per, SS_NOISE_SEED, i, 0.0, SS_STD).astype(np.float32)
        sl.append(np.concatenate([v[:, :NOISE_CHECK_ELEMS], v[:, -NOISE_CHECK_ELEMS:]], axis=1))
    r["noise_slice"] = np.stack(sl)                          # [2, 2, 2*NOISE_CHECK_ELEMS]
    r["noise_stats"] = noise_stats(N, per)
    out["SSCAM"] = r
    return out


def noise_stats(N, per):
    """Float64 mean and population std of every draw (all images) of the SS-CAM noise."""
    m, s = [], []
    for i in range(SS_SAMPLES):
        v = camgpu_normal(range(N), per, SS_NOISE_SEED, i, 0.0, SS_STD).astype(np.float32).astype(np.float64)
        m.append(float(v.mean()))
        s.append(float(v.std()))
    return {"mean": m, "std": s}


# --------------------------------------------------------------------------
# One model
# --------------------------------------------------------------------------


def build(name, cfg, log_):
    """The torch module and input exactly as tools/gen_cam_fixtures.py builds them."""
    checks = {}
    onnx_path = os.path.join(REPO, cfg["onnx"])
    card = json.load(open(os.path.join(REPO, cfg["card"]))) if cfg.get("card") else None
    kind, arch = cfg["source"]
    if kind == "torchvision":
        model, _ = gcf.torchvision_model(arch)
        checks.update(gcf.check_against_committed(name, model, onnx_path, log_))
    else:
        model = onnx_torch.load(onnx_path).eval()
    ik = cfg["input"]
    if ik[0] == "randn":
        x_np = gtf.make_input(ik[1], ik[2]).numpy()
    elif ik[0] == "file":
        x_np = np.load(os.path.join(REPO, ik[1]))
    else:
        x_np, _ = gcf.fashion_input(card, ik[1])
    layer = cfg["layer"] or card["targetLayer"]["module"]
    return model, x_np, layer, checks


def gen_model(name, pgc, tc, log_):
    P, BaseCAM, pimage, pt, _ = gcf.pgc_modules()
    import torchcam.methods as TC
    cfg = gcf.MODELS[name]
    d = os.path.join(OUT, name)
    meta1 = json.load(open(os.path.join(d, "meta.json")))
    model, x_np, layer, checks = build(name, cfg, log_)
    committed_in = np.load(os.path.join(REPO, meta1["input"]["file"]))
    if not np.array_equal(committed_in, x_np):
        raise RuntimeError("%s: rebuilt input differs from the committed %s" % (name, meta1["input"]["file"]))
    if layer != meta1["layer"]["module"] or list(cfg["targets"]) != meta1["targets"]:
        raise RuntimeError("%s: layer / targets differ from the part-1 fixture" % name)
    x = torch.from_numpy(x_np)
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    targets = list(cfg["targets"])
    layer_mod = model.get_submodule(layer)
    A1 = np.load(os.path.join(d, "activations.npy"))
    L1 = np.load(os.path.join(d, "logits.npy"))
    full = name in FULL_RES
    notes = {}

    log_("   PGC ScoreCAM")
    K = A1.shape[1]
    sc = pgc_scorecam(P, BaseCAM, pimage, pt, model, layer_mod, x, targets, K if full else 0, checks)
    if not (np.array_equal(sc["acts"], A1) and np.array_equal(sc["logits"], L1)):
        raise RuntimeError("%s: PGC's activations / logits differ from the part-1 fixture" % name)
    notes["scoreCamBatchSize"] = sc["batch_attr"] if sc["batch_attr"] is not None else 16
    log_("   PGC AblationCAM")
    ab = pgc_ablationcam(P, BaseCAM, pimage, pt, model, layer_mod, x, targets, L1, checks, notes)
    if not np.array_equal(ab["acts"], A1):
        raise RuntimeError("%s: AblationCAM activations differ" % name)
    log_("   TC ScoreCAM / ISCAM / SSCAM")
    tcr = tc_methods(TC, model, layer, x, targets, K, full, checks, notes)
    for m, r in tcr.items():
        e = rel_err(r["acts"], A1)
        if e > 0:
            raise RuntimeError("TC %s: hooked activation differs from PGC's" % m)
        if rel_err(r["baseline"], L1[np.arange(N), targets]) > 1e-6:
            raise RuntimeError("TC %s: baseline is not the target logit" % m)
    # finishing: how far TC's low-res map is from PGC's finishing of the same raw map
    # (and what PGC's final finishing would give)
    files = {}

    def put(fn, arr, desc):
        shape = gcf.save(os.path.join(d, fn), arr)
        files[fn] = {"shape": shape, "description": desc}
        return fn

    methods = {}
    # Selected channels for the recorded model inputs: image 0, largest / smallest /
    # median Score-CAM weight.
    sel = None
    if full:
        order = np.argsort(sc["weights"][0])
        sel = [int(order[-1]), int(order[0]), int(order[len(order) // 2])]

    e = {"library": "pgc", "pgcClass": "ScoreCAM",
         "constructor": {"target_layers": [layer], "reshape_transform": None},
         "call": {"targets": "ClassifierOutputTarget(targets[i]) per image", "aug_smooth": False, "eigen_smooth": False},
         "batchSize": notes["scoreCamBatchSize"],
         "mask": "u(up(A_k)), up = torch.nn.UpsamplingBilinear2d (bilinear, align_corners=True) to the input size, "
                 "u per (image, channel) over H*W with eps 1e-8",
         "masking": "the model input as given (normalized) times the mask, broadcast over input channels",
         "score": "logit of the target class (no softmax, no baseline)",
         "weights": None, "scores": None, "raw": None, "lowres": None, "final": None, "maskedInputs": None}
    e["scores"] = put("ScoreCAM-scores.npy", sc["scores"], "PGC ScoreCAM's per-channel score s_k = logit_c(x * M_k), [N, K] (recorded by the target)")
    e["weights"] = put("ScoreCAM-weights.npy", sc["weights"], "PGC ScoreCAM get_cam_weights: softmax over k of the scores (float32), [N, K]")
    e["raw"] = put("ScoreCAM-raw.npy", sc["raw"], "PGC get_cam_image with those weights: sum_k w_k A_k, before relu, [N, h, w]")
    e["lowres"] = put("ScoreCAM-lowres.npy", sc["lowres"], "PGC scale_cam_image(max(raw, 0)), [N, h, w]")
    if full:
        e["final"] = put("ScoreCAM.npy", sc["final"], "PGC ScoreCAM's returned map, [N, H, W]")
        e["maskedInputs"] = {"image": 0, "channels": sel,
                             "file": put("ScoreCAM-masked-inputs.npy", sc["rows"][sel],
                                         "what PGC ScoreCAM fed the model for image 0 and the listed channels: x_0 * M_k, [S, C, H, W]")}
    methods["ScoreCAM"] = e

    e = {"library": "pgc", "pgcClass": "AblationCAM",
         "constructor": {"target_layers": [layer], "reshape_transform": None, "batch_size": PGC_ABLATION_BATCH,
                         "ratio_channels_to_ablate": 1.0, "ablation_layer": "AblationLayer() (the default instance)"},
         "call": {"targets": "ClassifierOutputTarget(targets[i]) per image", "aug_smooth": False, "eigen_smooth": False},
         "ablation": ("the target module is swapped for AblationLayer (replace_layer_recursive); it ignores its input and "
                      "returns image n's cached activation repeated once per batch row, row j ablating the next channel in "
                      "order: set to 0 if the minimum of the whole batch tensor (re-read before each row) is exactly 0, "
                      "else to that minimum - 1e7"),
         "branch": notes["ablationBranch"], "imageMinActivation": notes["ablationImageMinActivation"],
         "originalScores": [float(v) for v in ab["original"]],
         "score": "logit of the target class",
         "weights": None, "scores": None, "raw": None, "lowres": None, "final": None}
    e["scores"] = put("AblationCAM-scores.npy", ab["scores"], "PGC AblationCAM's ablated score y_c^(k) (channel k ablated), [N, K]")
    e["weights"] = put("AblationCAM-weights.npy", ab["weights"], "PGC AblationCAM get_cam_weights: (y_c - y_c^(k)) / y_c (float32), [N, K]")
    e["raw"] = put("AblationCAM-raw.npy", ab["raw"], "PGC get_cam_image with those weights: sum_k w_k A_k, before relu, [N, h, w]")
    e["lowres"] = put("AblationCAM-lowres.npy", ab["lowres"], "PGC scale_cam_image(max(raw, 0)), [N, h, w]")
    if full:
        e["final"] = put("AblationCAM.npy", ab["final"], "PGC AblationCAM's returned map, [N, H, W]")
    methods["AblationCAM"] = e

    for m, r in tcr.items():
        key = "TC-" + m
        e = {"library": "tc", "tcClass": m, "repr": r["repr"],
             "constructor": {"target_layer": layer, "batch_size": TC_BATCH, "input_shape": list(x.shape[1:])},
             "call": "model(x) with hooks on, then extractor(class_idx=targets) (normalized=True)",
             "mask": "up(u(A_k)): u per (image, channel) on the low-res activation with eps 1e-8 (TC _normalize), then "
                     "F.interpolate(bilinear, align_corners=False) to the input size",
             "masking": "TC's stored model input (here the normalized tensor) times the mask",
             "score": "logit of class_idx[n] (output.gather; no softmax)",
             "baseline": [float(v) for v in r["baseline"]],
             "weights": None, "scores": None, "raw": None, "final": None}
        if m == "SSCAM":
            e["constructor"].update({"num_samples": SS_SAMPLES, "std": SS_STD})
            e["noise"] = {
                "added to": "the upsampled normalized mask up(u(A_k)) (input resolution), not to A_k; no renormalization",
                "draws": "one [N, K, H, W] draw per sample (TC's self._distrib.sample(activation.size())), %d draws" % SS_SAMPLES,
                "generator": ("camgpu's counter-based generator (src/ops/random.ts randomRef, dist 'normal', a = 0, b = %g): "
                              "draw i = stream i, seed %d (0x%X), row n = image n, per_row = K*H*W, element e = (k*H + y)*W + x; "
                              "computed in float64 and rounded to float32" % (SS_STD, SS_NOISE_SEED, SS_NOISE_SEED)),
                "seed": SS_NOISE_SEED, "streams": list(range(SS_SAMPLES)), "std": SS_STD,
                "check": {"file": put("TC-SSCAM-noise-slice.npy", r["noise_slice"],
                                      "camgpu-generator noise as fed to TC: draws [0, n-1] x images [0, N-1] x (first %d, last %d "
                                      "elements of the image's K*H*W row), [2, 2, %d]" % (NOISE_CHECK_ELEMS, NOISE_CHECK_ELEMS, 2 * NOISE_CHECK_ELEMS)),
                          "draws": [0, SS_SAMPLES - 1], "images": [0, N - 1], "elements": NOISE_CHECK_ELEMS},
                "drawStats": r["noise_stats"],
            }
        if m == "ISCAM":
            e["constructor"]["num_samples"] = IS_SAMPLES
            e["coefficients"] = notes["tcIsCamMeasuredCoefficients"]
            e["coefficientRule"] = "coeff_i = sum_{j=1..i} j/n (TC's running `coeff += (i+1)/n`), i = 1..n; measured on the model inputs"
        e["scores"] = put("%s-scores.npy" % key, r["scores"] if m != "ScoreCAM" else r["scores"][0],
                          "TC %s's raw selected scores (logit_c of each masked input, before its baseline subtraction), %s"
                          % (m, "[N, K]" if m == "ScoreCAM" else "[n, N, K] (step / draw i first)"))
        e["weights"] = put("%s-weights.npy" % key, r["weights"], "TC %s._get_weights (softmax over k), [N, K]" % m)
        e["raw"] = put("%s-raw.npy" % key, r["raw"], "TC compute_cams(normalized=False) with relu off: nansum_k w_k A_k, [N, h, w]")
        e["final"] = put("%s.npy" % key, r["final"], "TC's returned map: _normalize(relu(raw)), eps 1e-8, at the layer's resolution (TC does not upsample), [N, h, w]")
        if m == "ScoreCAM" and r["rows"] is not None:
            e["maskedInputs"] = {"image": 0, "channels": sel,
                                 "file": put("TC-ScoreCAM-masked-inputs.npy", r["rows"][sel],
                                             "what TC ScoreCAM fed the model for image 0 and the listed channels: x_0 * up(u(A_k)), [S, C, H, W]")}
        if m == "SSCAM" and r["rows"] is not None:
            e["maskedInputs"] = {"image": 0, "channels": sel[:1], "draw": 0,
                                 "file": put("TC-SSCAM-masked-inputs.npy", r["rows"][sel[:1]],
                                             "what TC SSCAM fed the model in draw 0 for image 0, channel listed: x_0 * (up(u(A_k)) + noise), [1, C, H, W]")}
        methods[key] = e

    meta = {
        "schema": SCHEMA,
        "name": name,
        "partOne": "meta.json",
        "model": meta1["model"]["file"],
        "input": meta1["input"]["file"],
        "targets": targets,
        "argmax": meta1["argmax"],
        "targetLogits": [float(L1[n, c]) for n, c in enumerate(targets)],
        "layer": meta1["layer"],
        "inputSize": [int(H), int(W)],
        "activations": "activations.npy",
        "logits": "logits.npy",
        "pgc": {"repository": "https://github.com/jacobgil/pytorch-grad-cam", "commit": pgc[0], "version": pgc[1]},
        "tc": {"repository": "https://github.com/frgfm/torch-cam", "commit": tc[0], "version": tc[1]},
        "device": "cpu", "torchThreads": torch.get_num_threads(),
        "methods": methods,
        "checks": checks,
        "files": dict(sorted(files.items())),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "onnx": onnx.__version__,
                     "python": sys.version.split()[0]},
    }
    with open(os.path.join(d, "sweeps.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    log_("   checks: %s" % json.dumps(checks))
    return meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--pgc-commit", required=True)
    ap.add_argument("--tc-commit", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import re
    import pytorch_grad_cam
    import torchcam
    srcs = [os.path.dirname(os.path.dirname(os.path.abspath(m.__file__))) for m in (pytorch_grad_cam, torchcam)]
    if any(os.path.abspath(s).startswith(REPO) for s in srcs):
        sys.exit("refusing to run PGC / TC from inside the repository")
    pv = None
    if os.path.exists(os.path.join(srcs[0], "setup.py")):
        m = re.search(r"version\s*=\s*['\"]([^'\"]+)", open(os.path.join(srcs[0], "setup.py")).read())
        pv = m.group(1) if m else None
    tv = torchcam.__version__
    log("PGC from %s (version %s, commit %s); TC from %s (version %s, commit %s)" % (
        srcs[0], pv, args.pgc_commit, srcs[1], tv, args.tc_commit))
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in names:
        log(name)
        gen_model(name, (args.pgc_commit, pv), (args.tc_commit, tv), log)
    # the index lists every model that has sweep fixtures (this run's and earlier ones)
    ipath = os.path.join(OUT, "sweeps.json")
    index = {"schema": SCHEMA, "models": {}}
    for name in MODELS:
        mp = os.path.join(OUT, name, "sweeps.json")
        if os.path.exists(mp):
            meta = json.load(open(mp))
            index["models"][name] = {"meta": name + "/sweeps.json", "methods": sorted(meta["methods"]),
                                     "pgcCommit": meta["pgc"]["commit"], "tcCommit": meta["tc"]["commit"]}
    index["pgc"] = {"commit": args.pgc_commit, "version": pv}
    index["tc"] = {"commit": args.tc_commit, "version": tv}
    with open(ipath, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")
    total = 0
    for name in index["models"]:
        m = json.load(open(os.path.join(OUT, name, "sweeps.json")))
        total += sum(os.path.getsize(os.path.join(OUT, name, fn)) for fn in m["files"]) + os.path.getsize(
            os.path.join(OUT, name, "sweeps.json"))
    log("sweep fixtures: %.2f MB" % (total / 1e6))


if __name__ == "__main__":
    main()
