#!/usr/bin/python3
"""Golden similarities for camgpu's Spearman and SSIM (src/metrics/similarity.ts), the two
measures of the cascading randomization check (SPEC section 2).

Writes test/fixtures/metrics/similarity/ (committed).  CI never runs this script: it needs
Quantus's `quantus/functions/similarity_func.py`, which is not a dependency of camgpu and is
never vendored or copied into the repository, and Debian's python3-scipy and
python3-skimage.  The committed fixtures are what test/metrics-similarity.test.ts reads.

Obtaining Quantus (owner/name understandable-machine-intelligence-lab/Quantus): only the
one module is loaded, by path, so the package's own imports (torch, tensorflow, ...) never
run:

    mkdir -p /tmp/quantus
    git --git-dir=MIRROR archive HEAD quantus/functions/similarity_func.py | tar -x -C /tmp/quantus

Run (Debian's Python; nothing is downloaded):

    QUANTUS_PATH=/tmp/quantus /usr/bin/python3 tools/gen_similarity_fixtures.py \\
        --quantus-commit <the mirror's HEAD>

What it writes:
  maps-56-a.npy, maps-56-b.npy   float32 [7, 56, 56]: one pair of maps per row (see CASES_56)
  factors-224.npy                float32 [2, 2, 4, 224]: per row and map, vectors p, q, r, s;
                                 the 224x224 map is relu?((p q^T + r s^T) - c) in float32,
                                 each operation rounded to float32 (the test rebuilds it with
                                 Math.fround, bit for bit; `sums` checks that)
  offsets-224.npy                float32 [2, 2]: c per row and map
  ranks-56-a3.npy                float32 [3136]: scipy.stats.rankdata(a[3]) (heavy ties)
  golden.json                    per case: Quantus's correlation_spearman and ssim (batched,
                                 as its MPRT calls them: maps reshaped to [N, H*W]), ssim on
                                 the 2-D maps, scipy.stats.spearmanr per row, and skimage on
                                 float32 inputs (to state how far float32 arithmetic is from
                                 the float64 goldens); NaN is written as null

Every golden is computed from the float32 maps cast to float64 (skimage computes in the
inputs' precision).
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import scipy.ndimage
import scipy.stats
import skimage
import skimage.metrics

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'metrics', 'similarity')

CASES_56 = [
    'tie-free, b = a + noise',
    'signed, independent',
    'relu-d (exact zeros) vs relu-d',
    '8 levels (heavy ties) vs relu-d',
    'constant a vs smooth b (Spearman undefined)',
    'both all zero (Spearman and SSIM undefined)',
    'identical maps',
]


def load_quantus(path):
    file = os.path.join(path, 'quantus', 'functions', 'similarity_func.py')
    spec = importlib.util.spec_from_file_location('quantus_similarity_func', file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def smooth(rng, side, sigma=4.0):
    f = scipy.ndimage.gaussian_filter(rng.standard_normal((side, side)), sigma)
    return (f - f.min()) / (f.max() - f.min())


def maps_56(rng):
    s = 56
    a = np.zeros((7, s, s))
    b = np.zeros((7, s, s))
    a[0] = smooth(rng, s)
    b[0] = a[0] + 0.1 * rng.standard_normal((s, s))
    a[1] = 2 * smooth(rng, s) - 1
    b[1] = 2 * smooth(rng, s) - 1
    a[2] = np.maximum(smooth(rng, s) - 0.5, 0)
    b[2] = np.maximum(smooth(rng, s) - 0.4, 0)
    a[3] = np.round(smooth(rng, s) * 7) / 7
    b[3] = np.maximum(smooth(rng, s) - 0.3, 0)
    a[4] = 0.3
    b[4] = smooth(rng, s)
    a[6] = smooth(rng, s, 2.0)
    b[6] = a[6]
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    for i in (0, 1):
        assert len(np.unique(a32[i])) == s * s and len(np.unique(b32[i])) == s * s, f'row {i} must be tie-free'
    assert (a32[2] == 0).mean() > 0.2 and (a32[3] == a32[3].flat[0]).sum() > 1
    return a32, b32


def maps_224(rng):
    n, side = 2, 224
    factors = rng.standard_normal((n, 2, 4, side)) * 0.5 + 0.6
    # b's factors are a's, perturbed: the pair's maps are related, not independent.
    factors[:, 1] = factors[:, 0] + 0.3 * rng.standard_normal((n, 4, side))
    factors = factors.astype(np.float32)
    offsets = np.array([[0.0, 0.45], [0.35, 0.5]], dtype=np.float32)
    use_relu = [[False, True], [True, True]]
    out = np.zeros((2, n, side, side), dtype=np.float32)
    for i in range(n):
        for m in range(2):
            p, q, r, s = factors[i, m]
            v = (p[:, None] * q[None, :] + r[:, None] * s[None, :]) - offsets[i, m]
            out[m, i] = np.maximum(v, np.float32(0)) if use_relu[i][m] else v
    assert out.dtype == np.float32
    return factors, offsets, use_relu, out[0], out[1]


def nulls(x):
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def goldens(q, a32, b32):
    n = a32.shape[0]
    a = a32.astype(np.float64)
    b = b32.astype(np.float64)
    flat_a, flat_b = a.reshape(n, -1), b.reshape(n, -1)
    with np.errstate(all='ignore'):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            out = {
                'spearman_quantus': nulls(q.correlation_spearman(flat_a, flat_b, batched=True)),
                'spearman_scipy': nulls([scipy.stats.spearmanr(flat_a[i], flat_b[i])[0] for i in range(n)]),
                'ssim_flat_quantus': nulls(q.ssim(flat_a, flat_b, batched=True)),
                'ssim_image_quantus': nulls(q.ssim(a, b, batched=True)),
                'ssim_flat_quantus_float32': nulls(q.ssim(a32.reshape(n, -1), b32.reshape(n, -1), batched=True)),
                'ssim_image_quantus_float32': nulls(q.ssim(a32, b32, batched=True)),
            }
    return out


def save(name, arr):
    np.save(os.path.join(OUT, name), arr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--quantus-commit', default='unknown', help="the Quantus commit loaded (recorded in golden.json)")
    ap.add_argument('--seed', type=int, default=20261202)
    args = ap.parse_args()
    path = os.environ.get('QUANTUS_PATH')
    if not path:
        sys.exit('set QUANTUS_PATH to a folder holding quantus/functions/similarity_func.py (see --help)')
    q = load_quantus(path)
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    a56, b56 = maps_56(rng)
    save('maps-56-a.npy', a56)
    save('maps-56-b.npy', b56)
    save('ranks-56-a3.npy', scipy.stats.rankdata(a56[3].astype(np.float64).ravel()).astype(np.float32))

    factors, offsets, use_relu, a224, b224 = maps_224(rng)
    save('factors-224.npy', factors)
    save('offsets-224.npy', offsets)

    golden = {
        'made_by': 'tools/gen_similarity_fixtures.py',
        'quantus': {'repo': 'understandable-machine-intelligence-lab/Quantus', 'commit': args.quantus_commit, 'module': 'quantus/functions/similarity_func.py'},
        'versions': {'numpy': np.__version__, 'scipy': scipy.__version__, 'skimage': skimage.__version__},
        'seed': args.seed,
        'cases': {
            '56': {'rows': CASES_56, **goldens(q, a56, b56)},
            '224': {
                'rows': ['signed a vs relu-d b', 'relu-d vs relu-d'],
                'relu': use_relu,
                'sums': [[float(a224[i].astype(np.float64).sum()), float(b224[i].astype(np.float64).sum())] for i in range(a224.shape[0])],
                **goldens(q, a224, b224),
            },
        },
    }
    with open(os.path.join(OUT, 'golden.json'), 'w') as f:
        json.dump(golden, f, indent=1)
        f.write('\n')
    for k, case in golden['cases'].items():
        print(k, {m: case[m] for m in ('spearman_quantus', 'ssim_flat_quantus', 'ssim_image_quantus')})


if __name__ == '__main__':
    main()
