#!/usr/bin/python3
"""Peer of `camgpu bench --eval`: POLY's own insertion/deletion code on Debian's PyTorch (CPU).

Issue 10's speed section times full insertion + deletion (224 + 224 steps, 16 images per
pass) of one 224x224 image on ResNet-50 and VGG-16, and asks for the same work done by
aenglebert/polycam's `benchmarks/metrics.py` in the same run, with the ratio stated.  This
script runs that code unmodified: it is imported from PYTHONPATH, never copied here.

How to run (Debian's Python has python3-torch / python3-torchvision; nothing is downloaded):

    # a snapshot of aenglebert/polycam whose benchmarks/ folder holds metrics.py
    git --git-dir=<polycam git dir> archive HEAD benchmarks | tar -x -C /tmp/poly
    # the full-size random-weight models (once): writes .cache/models/{resnet50,vgg16}.*
    /usr/bin/python3 tools/gen_torch_fixtures.py --full .cache/models --models resnet50,vgg16
    PYTHONPATH=/tmp/poly /usr/bin/python3 tools/bench_poly_metrics.py \
        --models resnet50,vgg16 --iters 1 [--models-dir .cache/models] [--threads 2]

Progress and a one-line summary per model go to stderr; one JSON object goes to stdout.

What is timed, so that both sides do the same work as tools/bench-eval.ts:
  * the model: torchvision's architecture rebuilt bit-identically from the seed that
    tools/gen_torch_fixtures.py --full used (checked against its logits.npy), wrapped in
    Softmax as POLY's evaluation.py does, eval mode, torch.no_grad, `--threads` CPU threads;
  * the image: camgpu's `seededInput` LCG (tools/bench.ts), 1x3x224x224;
  * the map: bench-eval.ts's smooth bump plus a per-pixel ramp, computed in float64 and
    stored as float32, as there;
  * the target class: 0, as bench-eval.ts seeds it (POLY would otherwise add a forward pass
    to find the argmax);
  * Insertion and Deletion with n_steps 224, batch_size 16, baseline "blur";
  * one untimed warm-up of both, then `--iters` rounds, each a bare round then an eval round
    (alternating, as bench-eval.ts does, so drifts of a shared machine fall on both sides);
  * bare: ceil(448 / 16) = 28 forward passes of a 16-image batch through the same wrapped
    model, so that the torch side's own overhead ratio (eval / bare) is known too.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import gen_torch_fixtures as fixtures  # noqa: E402  (the model builder of the --full fixtures)

STEPS = 224
BATCH = 16
SIZE = 224
TARGET_CLASS = 0
FIXTURE_SEED = 0  # gen_torch_fixtures.py's default --seed, which .cache/models was made with


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def import_poly():
    try:
        from benchmarks.metrics import Deletion, Insertion
    except ImportError as e:
        sys.exit(
            "bench_poly_metrics: cannot import benchmarks.metrics (%s); put a snapshot of "
            "aenglebert/polycam's benchmarks/ folder on PYTHONPATH" % e
        )
    return Insertion, Deletion


def seeded_input(n):
    """tools/bench.ts's seededInput: a 32-bit LCG mapped to [-1, 1), float64 then float32."""
    out = np.empty(n, dtype=np.float64)
    s = 12345
    for i in range(n):
        s = (s * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (s / 4294967296.0) * 2 - 1
    return out.astype(np.float32)


def bench_map(h, w):
    """tools/bench-eval.ts's map: exp(-8 r^2) * 0.999 around (0.4, 0.6) plus i / (H W) * 1e-3."""
    i = np.arange(h * w, dtype=np.float64)
    y = np.floor(i / w) / h - 0.4
    x = (i % w) / w - 0.6
    m = np.exp(-8 * (y * y + x * x)) * 0.999 + (i / (h * w)) * 1e-3
    return m.astype(np.float32).reshape(h, w)


def rebuild_model(arch, models_dir):
    """The --full fixture model, rebuilt the way gen_torch_fixtures.gen_one builds it, and the
    largest |logit - golden| on the fixture's own input batch."""
    ws = fixtures.weights_seed(FIXTURE_SEED, arch)
    torch.manual_seed(ws)
    model = fixtures.build_model(arch, False)
    fixtures.randomize(model, torch.Generator().manual_seed(ws + 1))
    model.eval()
    with open(os.path.join(models_dir, arch + ".json")) as f:
        manifest = json.load(f)
    x = torch.from_numpy(np.load(os.path.join(models_dir, manifest["input"]["file"])))
    golden = np.load(os.path.join(models_dir, manifest["output"]["file"]))
    with torch.no_grad():
        logits = model(x).numpy()
    diff = float(np.max(np.abs(logits.astype(np.float64) - golden)))
    scale = float(np.max(np.abs(golden)))
    if not diff <= 1e-4 * max(1.0, scale):
        sys.exit("bench_poly_metrics: rebuilt %s does not match %s (max |diff| %g)" % (
            arch, manifest["output"]["file"], diff))
    return model, diff


def median(v):
    return sorted(v)[len(v) // 2]


def bench_one(arch, models_dir, iters, Insertion, Deletion):
    model, logits_diff = rebuild_model(arch, models_dir)
    scored = torch.nn.Sequential(model, torch.nn.Softmax(dim=-1)).eval()
    per = 3 * SIZE * SIZE
    image = torch.from_numpy(seeded_input(per)).reshape(1, 3, SIZE, SIZE)
    saliency = torch.from_numpy(bench_map(SIZE, SIZE))
    map_ties = int(saliency.numel() - torch.unique(saliency).numel())
    insertion = Insertion(scored, STEPS, BATCH, baseline="blur")
    deletion = Deletion(scored, STEPS, BATCH, baseline="blur")
    passes = 2 * STEPS
    rounds = math.ceil(passes / BATCH)
    bare_batch = torch.from_numpy(seeded_input(BATCH * per)).reshape(BATCH, 3, SIZE, SIZE)

    def eval_once():
        t0 = time.perf_counter()
        ins_auc, ins_scores = insertion(image, saliency, TARGET_CLASS)
        del_auc, del_scores = deletion(image, saliency, TARGET_CLASS)
        s = time.perf_counter() - t0
        return s, float(ins_auc), float(del_auc), ins_scores.numel() + del_scores.numel()

    def bare_once():
        t0 = time.perf_counter()
        with torch.no_grad():
            for _ in range(rounds):
                out = scored(bare_batch)
        float(out[0, 0])
        return (time.perf_counter() - t0) * passes / (rounds * BATCH)

    log("poly peer: %s, insertion+deletion = %d forward passes of one %dx%d image, %d per pass, "
        "%d torch threads (rebuilt model matches logits.npy to %.2g)" % (
            arch, passes, SIZE, SIZE, BATCH, torch.get_num_threads(), logits_diff))
    with torch.no_grad():
        cold_s, ins_auc, del_auc, points = eval_once()
        log("  warm-up insertion+deletion: %.2f s (insertion AUC %.6f, deletion AUC %.6f)" % (
            cold_s, ins_auc, del_auc))
        if points != passes:
            sys.exit("bench_poly_metrics: POLY produced %d scores, expected %d" % (points, passes))
        bare_once()
        eval_s, bare_s = [], []
        for i in range(iters):
            bare_s.append(bare_once())
            eval_s.append(eval_once()[0])
            log("  round %d: bare %.2f s, insertion+deletion %.2f s" % (i + 1, bare_s[i], eval_s[i]))
    e, b = median(eval_s), median(bare_s)
    result = {
        "model": arch,
        "passes": passes,
        "batch": BATCH,
        "steps": STEPS,
        "baseline": "blur",
        "target_class": TARGET_CLASS,
        "map_ties_float32": map_ties,
        "rebuilt_logits_max_abs_diff": logits_diff,
        "insertion_auc": ins_auc,
        "deletion_auc": del_auc,
        "cold_s": cold_s,
        "eval_s": eval_s,
        "bare_s": bare_s,
        "eval_median_s": e,
        "bare_median_s": b,
        "eval_passes_per_s": passes / e,
        "bare_passes_per_s": passes / b,
        "ratio": e / b,
    }
    log("%s: POLY insertion+deletion %.2f s (%.1f passes/s), bare torch %.2f s (%.1f passes/s); "
        "ratio %.3f" % (arch, e, passes / e, b, passes / b, e / b))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="resnet50,vgg16", help="comma-separated torchvision names made by gen_torch_fixtures.py --full")
    ap.add_argument("--models-dir", default=os.path.join(REPO, ".cache", "models"))
    ap.add_argument("--iters", type=int, default=1, help="timed rounds after the warm-up")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    if args.iters < 1:
        sys.exit("bench_poly_metrics: --iters must be at least 1")
    torch.set_num_threads(args.threads)
    Insertion, Deletion = import_poly()
    archs = [a for a in args.models.split(",") if a]
    for a in archs:
        if a not in fixtures.ALL_MODELS:
            sys.exit("bench_poly_metrics: unknown model '%s' (use %s)" % (a, ", ".join(fixtures.ALL_MODELS)))
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = [bench_one(a, args.models_dir, args.iters, Insertion, Deletion) for a in archs]
    print(json.dumps({
        "peer": "aenglebert/polycam benchmarks/metrics.py Insertion + Deletion",
        "date": started,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "models": results,
    }, indent=1))


if __name__ == "__main__":
    main()
