#!/usr/bin/python3
"""Golden outputs of pytorch-grad-cam's ROAD (metrics/road.py, perturbation_confidence.py)
for camgpu's src/metrics/road.ts and the `impute` op (src/ops/impute.ts).

Writes test/fixtures/metrics/road/ (committed; CI never runs this script: it needs PGC,
which camgpu never vendors or copies).  The section "ROAD" of
test/fixtures/metrics/README.md is not this script's: road/README.md describes the files.

Obtaining PGC (a snapshot of its default branch; no install):

    git --git-dir=MIRROR archive HEAD pytorch_grad_cam setup.py | tar -x -C /tmp/pgc
    # or clone the GitHub repository jacobgil/pytorch-grad-cam to /tmp/pgc

PGC imports `ttach` at module level (Debian has none): put a stand-in `ttach.py` with no-op
classes `Compose`, `HorizontalFlip`, `Multiply` in a directory OUTSIDE the repository (see
tools/gen_cam_fixtures.py) and put it on PYTHONPATH.

Run (Debian's Python: torch, numpy, scipy, onnx, cv2; CPU, no network):

    PYTHONPATH=/tmp/pgc:/tmp/pgc_stubs /usr/bin/python3 tools/gen_road_fixtures.py \\
        --pgc-commit $(git --git-dir=MIRROR rev-parse HEAD)

What it does:
  1. maps.npy: one tie-free map per image of the committed Fashion input, whose values are
     distinct multiples of 2^-12 (so 1 - map is exact and tie-free too, and numpy's
     percentile never lands within rounding of a map value);
  2. impute/: NoisyLinearImputer(noise=0) on three small cases (random holes in a 3-channel
     image, a block touching two edges, 90 % of a Fashion image removed), checked against a
     float64 dense solve written here from the definition;
  3. per model (models/fashion-resnet.onnx, models/fashion-vgg.onnx, run in torch by
     tools/onnx_torch.py and checked against its NumPy float64 evaluator), per order (MoRF,
     LeRF) and percentile p = 10..90: ROADMostRelevantFirst / ROADLeastRelevantFirst with
     ClassifierOutputSoftmaxTarget, scores with return_diff False and True, and the
     averagers.  The noise: torch.randn_like is replaced during the calls by draws saved in
     noise.npy for p in NOISE_PERCENTILES (z at every pixel; PGC takes the removed ones in
     its own order, np.argwhere of the flattened mask) and by zeros for the other p, so the
     metric is deterministic and camgpu can be fed the same z.
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import onnx  # noqa: E402
import onnx_torch  # noqa: E402

OUT = os.path.join(REPO, "test", "fixtures", "metrics", "road")
INPUT = "test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy"
TARGETS = [4, 6, 9]
MODELS = {"fashion-resnet": "models/fashion-resnet.onnx", "fashion-vgg": "models/fashion-vgg.onnx"}
PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]
NOISE_PERCENTILES = [10, 50, 90]
NOISE_SEED = 20261203
SCHEMA = "camgpu-road-fixture/1"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_maps(x):
    """Tie-free maps in [0, 1): the ranks of a smooth saliency (the blurred image plus a
    centre term, a tiny raster ramp breaking ties) as (rank + 0.5) * 2^-12."""
    from scipy.ndimage import gaussian_filter
    n, _, h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = np.zeros((n, h, w), np.float32)
    for i in range(n):
        img = x[i, 0].astype(np.float64)
        img = (img - img.min()) / (img.max() - img.min())
        cy, cx = h * (0.35 + 0.15 * i), w * (0.6 - 0.1 * i)
        centre = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.25 * h) ** 2))
        field = gaussian_filter(img, 3.0) + 0.5 * centre + 1e-9 * (yy * w + xx)
        ranks = np.empty(h * w, np.int64)
        ranks[np.argsort(field.ravel(), kind="stable")] = np.arange(h * w)
        maps[i] = ((ranks + 0.5) / 4096.0).reshape(h, w).astype(np.float32)
    for i in range(n):
        assert len(np.unique(maps[i])) == h * w and len(np.unique(np.float32(1) - maps[i])) == h * w
        assert np.array_equal((np.float32(1) - maps[i]).astype(np.float64), 1.0 - maps[i].astype(np.float64))
    return maps


def dense_impute(img, keep):
    """Float64 reference from the definition: per channel, every removed pixel equals the
    weighted mean of its in-image neighbours (1/6 straight, 1/12 diagonal), solved densely."""
    c, h, w = img.shape
    removed = [p for p in range(h * w) if keep.ravel()[p] < 0.5]
    index = {p: k for k, p in enumerate(removed)}
    m = len(removed)
    A = np.zeros((m, m))
    b = np.zeros((m, c))
    offs = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
            (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
    flat = img.reshape(c, -1).astype(np.float64)
    for k, p in enumerate(removed):
        y, x = divmod(p, w)
        for dy, dx, wt in offs:
            qy, qx = y + dy, x + dx
            if not (0 <= qy < h and 0 <= qx < w):
                continue
            A[k, k] += wt
            q = qy * w + qx
            if q in index:
                A[k, index[q]] -= wt
            else:
                b[k] += wt * flat[:, q]
    u = np.linalg.solve(A, b)
    out = flat.copy()
    for k, p in enumerate(removed):
        out[:, p] = u[k]
    return out.reshape(c, h, w)


class NoiseFeed:
    """Replaces torch.randn_like inside road.py's NoisyLinearImputer while active: within a
    metric call (PerturbationConfidenceMetric.__call__, which also starts each averager's
    percentile), the k-th imputation is image k; its draws are z[image][:, removed pixels]
    (PGC's own order) for the percentiles with saved noise, zeros for the others."""

    def __init__(self, road, pc, z):
        self.road, self.pc, self.z = road, pc, z
        self.p, self.image, self.removed = None, 0, None

    def __enter__(self):
        feed = self
        self.orig_metric = self.pc.PerturbationConfidenceMetric.__call__
        self.orig_impute = self.road.NoisyLinearImputer.__call__
        self.orig_randn = torch.randn_like

        def metric(m, *a, **k):
            feed.p, feed.image = m.perturbation.percentile, 0
            return feed.orig_metric(m, *a, **k)

        def impute(imputer, img, mask):
            feed.removed = np.argwhere(mask.reshape(-1).numpy() == 0).flatten()
            try:
                return feed.orig_impute(imputer, img, mask)
            finally:
                feed.image += 1

        def randn_like(t, *a, **k):
            if feed.p not in NOISE_PERCENTILES:
                return torch.zeros_like(t)
            zi = feed.z[feed.image, NOISE_PERCENTILES.index(feed.p)]
            picked = zi.reshape(zi.shape[0], -1)[:, feed.removed]
            # spsolve returns a 1-D solution for one channel: res.t() is then [removed].
            assert picked.size == t.numel()
            return torch.from_numpy(np.ascontiguousarray(picked.reshape(tuple(t.shape))))

        self.pc.PerturbationConfidenceMetric.__call__ = metric
        self.road.NoisyLinearImputer.__call__ = impute
        torch.randn_like = randn_like
        return self

    def __exit__(self, *exc):
        self.pc.PerturbationConfidenceMetric.__call__ = self.orig_metric
        self.road.NoisyLinearImputer.__call__ = self.orig_impute
        torch.randn_like = self.orig_randn


def f32list(a):
    return [float("%.9g" % v) for v in np.asarray(a, np.float32).ravel()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pgc-commit", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pytorch_grad_cam.metrics import perturbation_confidence as pc
    from pytorch_grad_cam.metrics import road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    os.makedirs(os.path.join(OUT, "impute"), exist_ok=True)
    x = np.load(os.path.join(REPO, INPUT))
    n, c, h, w = x.shape
    maps = make_maps(x)
    np.save(os.path.join(OUT, "maps.npy"), maps)
    z = np.random.default_rng(NOISE_SEED).standard_normal((n, len(NOISE_PERCENTILES), c, h, w)).astype(np.float32)
    np.save(os.path.join(OUT, "noise.npy"), z)
    checks = {}

    # Imputation goldens (noise 0).
    rng = np.random.default_rng(7)
    cases = {}
    img_a = rng.standard_normal((3, 12, 10)).astype(np.float32)
    keep_a = (rng.random((12, 10)) > 0.4).astype(np.float32)
    cases["holes-3x12x10"] = (img_a, keep_a)
    img_b = (np.sin(np.arange(256) * 0.37).reshape(1, 16, 16) + rng.standard_normal((1, 16, 16)) * 0.1).astype(np.float32)
    keep_b = np.ones((16, 16), np.float32)
    keep_b[0:10, 6:16] = 0
    keep_b[12, 2] = keep_b[15, 15] = keep_b[14, 0] = 0
    cases["edge-block-1x16x16"] = (img_b, keep_b)
    thr = np.percentile(maps[0], 10)
    keep_c = np.float32(maps[0] < thr)
    cases["fashion0-morf10-1x56x56"] = (x[0], keep_c)
    imputer = road.NoisyLinearImputer(noise=0.0)
    impute_meta = {}
    for name, (img, keep) in cases.items():
        out = imputer(torch.from_numpy(img), torch.from_numpy(keep)).numpy()
        ref = dense_impute(img, keep)
        err = float(np.abs(out - ref).max())
        assert err < 1e-5, (name, err)
        np.save(os.path.join(OUT, "impute", name + "-x.npy"), img[None])
        np.save(os.path.join(OUT, "impute", name + "-keep.npy"), keep[None])
        np.save(os.path.join(OUT, "impute", name + "-out.npy"), out[None].astype(np.float32))
        impute_meta[name] = {"shape": [1] + list(img.shape), "removed": int((keep < 0.5).sum())}
        checks["impute %s: |PGC - float64 dense solve|" % name] = err

    targets = [ClassifierOutputSoftmaxTarget(t) for t in TARGETS]
    xt = torch.from_numpy(x)
    results = {}
    removed = {}
    for model_name, path in MODELS.items():
        err, scale = onnx_torch.check(os.path.join(REPO, path), x)
        checks["%s: |torch - NumPy float64| logits" % model_name] = err
        model = onnx_torch.load(os.path.join(REPO, path)).eval()
        with torch.no_grad():
            clean = torch.softmax(model(xt), dim=-1)[torch.arange(n), torch.tensor(TARGETS)].numpy()
        entry = {"clean": f32list(clean)}
        for order, cls, avg in (("morf", road.ROADMostRelevantFirst, road.ROADMostRelevantFirstAverage),
                                ("lerf", road.ROADLeastRelevantFirst, road.ROADLeastRelevantFirstAverage)):
            with NoiseFeed(road, pc, z):
                raw = np.float32([cls(p)(xt, maps, targets, model, return_diff=False) for p in PERCENTILES]).T  # [N, P]
                diff = np.float32([cls(p)(xt, maps, targets, model, return_diff=True) for p in PERCENTILES]).T
                mean = avg(PERCENTILES)(xt, maps, targets, model)
            m = maps if order == "morf" else (1 - torch.from_numpy(maps)).numpy()
            removed[order] = [[int((~(torch.from_numpy(m[i]) < np.percentile(m[i], p))).sum()) for p in PERCENTILES] for i in range(n)]
            checks["%s %s: |diff - (scores - clean)|" % (model_name, order)] = float(np.abs(diff - (raw - clean[:, None])).max())
            checks["%s %s: |averager - mean(diff)|" % (model_name, order)] = float(np.abs(mean - diff.mean(axis=1)).max())
            entry[order] = {"scores": [f32list(r) for r in raw], "diff": [f32list(r) for r in diff], "meanDiff": f32list(mean)}
        with NoiseFeed(road, pc, z):
            entry["combined"] = f32list(road.ROADCombined(PERCENTILES)(xt, maps, targets, model))
        entry["model"] = {"file": path, "sha256": sha256(os.path.join(REPO, path))}
        results[model_name] = entry

    meta = {
        "schema": SCHEMA,
        "reference": {"repository": "jacobgil/pytorch-grad-cam", "files": ["pytorch_grad_cam/metrics/road.py", "pytorch_grad_cam/metrics/perturbation_confidence.py"], "commit": args.pgc_commit},
        "environment": {"torch": torch.__version__, "numpy": np.__version__},
        "input": {"file": INPUT, "shape": list(x.shape), "sha256": sha256(os.path.join(REPO, INPUT))},
        "targets": TARGETS,
        "percentiles": PERCENTILES,
        "noise": {"file": "noise.npy", "std": 0.01, "percentiles": NOISE_PERCENTILES, "seed": NOISE_SEED,
                  "how": "standard normal z [N, len(percentiles), C, H, W]; PGC adds 0.01 * z at the removed pixels; zeros at the other percentiles"},
        "maps": "maps.npy",
        "removed": removed,
        "impute": impute_meta,
        "models": results,
        "checks": checks,
    }
    with open(os.path.join(OUT, "road.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for k, v in checks.items():
        print("%s: %.3g" % (k, v))


if __name__ == "__main__":
    main()
