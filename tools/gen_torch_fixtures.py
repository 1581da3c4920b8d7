#!/usr/bin/python3
"""Generate golden reference data for camgpu's ONNX importer from PyTorch.

Run with Debian's Python (it has python3-torch / python3-torchvision /
python3-onnx; nothing else is needed, and no weights are downloaded):

    /usr/bin/python3 tools/gen_torch_fixtures.py            # == --small
    /usr/bin/python3 tools/gen_torch_fixtures.py --small [OUTDIR]
    /usr/bin/python3 tools/gen_torch_fixtures.py --full OUTDIR [--models resnet18]

Modes
-----
--small (default)  Narrowed copies of torchvision's resnet18 / resnet50 /
                   vgg11_bn / vgg16 ("-w8": channel widths divided by 8),
                   built from torchvision's own building blocks so that every
                   module path (conv1, layer4.1.relu, features.29,
                   classifier.0, ...) and every ONNX node name
                   (/layer4/layer4.1/relu_2/Relu, ...) matches the real model.
                   Written to test/fixtures/torch/ and committed.
                   ResNets take 3x64x64, VGGs 3x224x224 (the smallest size at
                   which AdaptiveAvgPool2d((7,7)) exports: the pre-pool
                   feature map must be a multiple of 7).
--full OUTDIR      The real torchvision architectures at 3x224x224 with random
                   weights (45-550 MB of ONNX; not committed).

Every model gets random weights (seeded) and *randomized* BatchNorm running
statistics and affine parameters (so folding BN into Conv is observable),
is put in eval mode and exported with the TorchScript-based exporter
(torch.onnx.export; this torch has no dynamo exporter) with
training=TrainingMode.PRESERVE and do_constant_folding=False.  PRESERVE on an
eval()-mode model matters: with the default training=EVAL torch runs its
"eval peephole" pass, which folds BatchNormalization into the preceding Conv
*regardless of do_constant_folding*; PRESERVE keeps the raw graph with
BatchNormalization(training_mode=0) nodes.

Layout of OUTDIR (all paths in a manifest are relative to OUTDIR):

    index.json                      list of models and their manifests
    inputs/input-<N>x<C>x<H>x<W>-seed<S>.npy   shared input batches
    <name>.onnx                     the exported model
    <name>.json                     manifest (see below)
    <name>/logits.npy               model output for the input batch
    <name>/tap-<module path>.npy    forward-hook output of a torch module
    <name>/tap-node-<node>.npy      output of one ONNX node, by node name
    <name>/grad-input.npy           d(sum_i logits[i, t_i]) / d input
    <name>/grad-<module path>.npy   same objective, w.r.t. a tapped activation

All arrays are float32, NCHW (or N x features), little-endian .npy v1.0.
"""

import argparse
import hashlib
import json
import os
import re
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torchvision
import onnx
from torchvision.models import resnet as tv_resnet
from torchvision.models import vgg as tv_vgg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SMALL_OUT = os.path.join(REPO, "test", "fixtures", "torch")
ALL_MODELS = ["resnet18", "resnet50", "vgg11_bn", "vgg16"]
BATCH = 3
TARGETS = [1, 4, 7]  # per-image target class for the gradient objective
NUM_CLASSES_SMALL = 10
WIDTH_DIV = 8  # channel divisor of the -w8 models
VGG_HIDDEN_DIV = 128  # classifier hidden width of the small VGGs: 4096 / 128 = 32


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class NarrowResNet(tv_resnet.ResNet):
    """torchvision ResNet with all channel widths divided by `div`.

    Mirrors torchvision.models.resnet.ResNet.__init__ (same attribute names,
    same _make_layer, same init, inherited forward) but with base width 64/div.
    """

    def __init__(self, block, layers, num_classes, div):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        w = 64 // div
        self.inplanes = w
        self.dilation = 1
        self.groups = 1
        # Bottleneck's inner width is planes * base_width / 64 * groups: keep
        # base_width at 64 so that it stays == planes (as in resnet50).
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, w, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, w, layers[0])
        self.layer2 = self._make_layer(block, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * w, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


class NarrowVGG(tv_vgg.VGG):
    """torchvision VGG (features from vgg.make_layers) with a narrowed
    classifier of identical structure / indices (classifier.0 .. .6)."""

    def __init__(self, features, flat, hidden, num_classes, dropout=0.5):
        nn.Module.__init__(self)
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(flat * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        # Same init as torchvision's VGG.__init__(init_weights=True).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


VGG_CFG = {"vgg11_bn": ("A", True), "vgg16": ("D", False)}
RESNET_CFG = {
    "resnet18": (tv_resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet50": (tv_resnet.Bottleneck, [3, 4, 6, 3]),
}


def build_model(arch, small):
    if arch in RESNET_CFG:
        if not small:
            return getattr(torchvision.models, arch)(weights=None)
        block, layers = RESNET_CFG[arch]
        return NarrowResNet(block, layers, NUM_CLASSES_SMALL, WIDTH_DIV)
    cfg_key, bn = VGG_CFG[arch]
    if not small:
        return getattr(torchvision.models, arch)(weights=None)
    cfg = [v if v == "M" else v // WIDTH_DIV for v in tv_vgg.cfgs[cfg_key]]
    features = tv_vgg.make_layers(cfg, batch_norm=bn)
    return NarrowVGG(features, 512 // WIDTH_DIV, 4096 // VGG_HIDDEN_DIV, NUM_CLASSES_SMALL)


def randomize(model, gen):
    """Randomize what torchvision's init leaves trivial: BN statistics and
    affine params, conv / linear biases, and the classifier weights (VGG's
    N(0, 0.01) linear init would make the logits ~1e-3; use He init)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)  # U(0.5, 1.5)
                m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)  # U(0.75, 1.25)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
            elif isinstance(m, nn.Conv2d):
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.05)
            elif isinstance(m, nn.Linear):
                fan_in = m.weight.shape[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        # Keep the residual stream from growing block after block (ResNet-50
        # logits would otherwise reach ~1e2..1e3); trained ResNets also have
        # small gammas on the last BN of each block.
        for m in model.modules():
            if isinstance(m, tv_resnet.BasicBlock):
                m.bn2.weight.mul_(0.3)
            elif isinstance(m, tv_resnet.Bottleneck):
                m.bn3.weight.mul_(0.3)
    for m in model.modules():
        # Numerically identical, exports identically (Relu), but keeps hooked
        # outputs / retain_grad tensors from being overwritten in place.
        if isinstance(m, nn.ReLU):
            m.inplace = False


# --------------------------------------------------------------------------
# Taps
# --------------------------------------------------------------------------


def taps_for(arch, small):
    """(module taps, node taps, grad taps) for an architecture.

    A module tap is a torch module path; its golden value is the module's
    forward output (forward hook).  A node tap is
    (onnx node name, module path, call index, "output" | "input"): the golden
    value of that ONNX node's output is the output (or first input) of the
    call-th invocation of the module.  torch names repeated calls of one
    module relu, relu_1, relu_2, ..., and graph-level ops with no module of
    their own (the residual Add, torch.flatten) are only reachable by node
    name; their value is the input of the module that consumes them."""
    if arch == "resnet18":
        return (
            ["relu", "layer1", "layer2.0.downsample", "layer4"],
            [("/layer2/layer2.1/relu/Relu", "layer2.1.relu", 0, "output"),
             ("/layer4/layer4.1/Add", "layer4.1.relu", 1, "input")],
            ["layer4"],
        )
    if arch == "resnet50":
        return (
            ["relu", "layer1", "layer3.0.downsample", "layer4"],
            [("/layer3/layer3.2/relu_1/Relu", "layer3.2.relu", 1, "output"),
             ("/layer4/layer4.1/relu_2/Relu", "layer4.1.relu", 2, "output"),
             ("/layer2/layer2.0/Add", "layer2.0.relu", 2, "input")],
            ["layer4"],
        )
    if arch == "vgg11_bn":
        # features = [conv, bn, relu] per conv + MaxPools: the last ReLU is
        # features.27, the last BatchNorm features.26 (fed by Conv
        # features.25), features.14 is the 3rd MaxPool.
        return (
            ["features.14", "features.26", "features.27", "classifier.0"],
            [("/features/features.25/Conv", "features.26", 0, "input"),
             ("/Flatten", "classifier.0", 0, "input")],
            ["features.27"],
        )
    if arch == "vgg16":
        # features.29 is the last ReLU, features.28 the last Conv,
        # features.16 the 3rd MaxPool.
        return (
            ["features.16", "features.28", "features.29", "classifier.0"],
            [("/Flatten", "classifier.0", 0, "input"),
             ("/classifier/classifier.4/Relu", "classifier.4", 0, "output")],
            ["features.29"],
        )
    raise ValueError(arch)


def node_tap_file(node):
    s = node.strip("/").replace("/", ".")
    return "tap-node-" + re.sub(r"[^A-Za-z0-9_.-]", "_", s) + ".npy"


def scope_of(path):
    """ONNX scope prefix torch gives the nodes inside module `path`: one
    component per module level, the attribute name, except that an indexed
    child of a Sequential is '<parent attr>.<i>':
    layer2.0.downsample.0 -> /layer2/layer2.0/downsample/downsample.0/"""
    parts = path.split(".")
    out = []
    for i, p in enumerate(parts):
        out.append(parts[i - 1] + "." + p if (p.isdigit() and i > 0) else p)
    return "/" + "/".join(out) + "/"


def onnx_value_for_module(graph_nodes, path):
    """Output of the last node (topological order) whose name lies in the
    module's scope; a hint for the importer's tap resolution."""
    prefix = scope_of(path)
    last = None
    for n in graph_nodes:
        if n.name.startswith(prefix):
            last = n
    if last is None:
        return None, None
    return last.name, last.output[0]


# --------------------------------------------------------------------------
# Golden data
# --------------------------------------------------------------------------


def weights_seed(seed, arch):
    return (seed * 1000003 + zlib.crc32(arch.encode())) % (2 ** 31)


def make_input(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def save_npy(path, t):
    a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, a)
    return list(a.shape)


def run_with_taps(model, x, module_taps, node_taps, grad_taps, targets):
    """Forward with hooks; returns logits, {key: tensor}, grads."""
    mods = dict(model.named_modules())
    calls = {}
    handles = []
    need = set(module_taps) | set(t[1] for t in node_taps) | set(grad_taps)

    def hook(name):
        def f(_m, inp, out):
            k = len(calls.get(name, []))
            if name in grad_taps and k == 0:
                out.retain_grad()
                o = out  # keep the live tensor to read .grad after backward
            else:
                o = out.detach().clone()
            calls.setdefault(name, []).append({"output": o, "input": inp[0].detach().clone()})
        return f

    for name in need:
        if name not in mods:
            raise KeyError("no module %r" % name)
        handles.append(mods[name].register_forward_hook(hook(name)))
    for p in model.parameters():
        p.requires_grad_(False)  # only input / activation gradients are needed
    try:
        x = x.clone().requires_grad_(True)
        logits = model(x)
        obj = logits[torch.arange(x.shape[0]), torch.tensor(targets)].sum()
        obj.backward()
    finally:
        for h in handles:
            h.remove()
    vals = {}
    for name in module_taps:
        if len(calls[name]) != 1:
            raise RuntimeError("module %s called %d times; use a node tap" % (name, len(calls[name])))
        vals[name] = calls[name][0]["output"].detach().clone()
    nvals = {}
    for node, name, k, which in node_taps:
        nvals[node] = calls[name][k][which].detach().clone()
    grads = {"input": x.grad.detach().clone()}
    for name in grad_taps:
        grads[name] = calls[name][0]["output"].grad.detach().clone()
    return logits.detach().clone(), vals, nvals, grads


def export_onnx(model, x, path, opset):
    model.eval()
    torch.onnx.export(
        model,
        (x,),
        path,
        export_params=True,
        verbose=False,
        training=torch.onnx.TrainingMode.PRESERVE,  # keep BatchNormalization
        input_names=["input"],
        output_names=["logits"],
        opset_version=opset,
        do_constant_folding=False,
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
    )


def onnx_summary(m):
    ops = {}
    attrs = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, onnx.TensorProto):
                v = "tensor(%s,%s)" % (onnx.TensorProto.DataType.Name(v.data_type), list(v.dims))
            elif isinstance(v, (list, tuple)):
                v = list(v)
            key = "%s.%s" % (n.op_type, a.name)
            s = json.dumps(v)
            attrs.setdefault(key, [])
            if s not in attrs[key]:
                attrs[key].append(s)
    return ops, attrs


def eval_onnx_reference(m, x):
    """Tiny ONNX interpreter (torch.nn.functional kernels) for the op set the
    exporter emits for these models; returns {value name: tensor}.  Used to
    check that the exported graph reproduces the hook-recorded goldens,
    including which ONNX value each tap names (no onnxruntime here)."""
    import torch.nn.functional as F
    from onnx import numpy_helper
    env = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    env[m.graph.input[0].name] = x
    for n in m.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        i = [env[v] if v else None for v in n.input]
        op = n.op_type

        def sym_pads(p):
            h = len(p) // 2
            if list(p[:h]) != list(p[h:]):
                raise NotImplementedError("asymmetric pads")
            return list(p[:h])
        if op == "Conv":
            y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a.get("strides", 1),
                         padding=sym_pads(a.get("pads", [0, 0, 0, 0])),
                         dilation=a.get("dilations", 1), groups=a.get("group", 1))
        elif op == "BatchNormalization":
            assert a.get("training_mode", 0) == 0
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(i[0])
        elif op == "Add":
            y = i[0] + i[1]
        elif op == "MaxPool":
            y = F.max_pool2d(i[0], a["kernel_shape"], a.get("strides", 1),
                             sym_pads(a.get("pads", [0, 0, 0, 0])), a.get("dilations", 1),
                             bool(a.get("ceil_mode", 0)))
        elif op == "AveragePool":
            y = F.avg_pool2d(i[0], a["kernel_shape"], a.get("strides", 1),
                             sym_pads(a.get("pads", [0, 0, 0, 0])), bool(a.get("ceil_mode", 0)),
                             bool(a.get("count_include_pad", 0)))
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            y = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Gemm":
            A = i[0].t() if a.get("transA", 0) else i[0]
            B = i[1].t() if a.get("transB", 0) else i[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2 and i[2] is not None:
                y = y + a.get("beta", 1.0) * i[2]
        else:
            raise NotImplementedError("reference evaluator: op %s" % op)
        env[n.output[0]] = y
    return env


def verify(outdir, manifest, log):
    om = onnx.load(os.path.join(outdir, manifest["model"]))
    x = torch.from_numpy(np.load(os.path.join(outdir, manifest["input"]["file"])))
    with torch.no_grad():
        env = eval_onnx_reference(om, x)
    checks = [("logits", manifest["output"]["file"], om.graph.output[0].name)]
    checks += [(t.get("node") or t["module"], t["file"], t["onnx_value"]) for t in manifest["taps"]]
    worst = 0.0
    for label, fn, value in checks:
        want = np.load(os.path.join(outdir, fn))
        got = env[value].numpy()
        if got.shape != want.shape:
            raise RuntimeError("%s: %s shape %s vs golden %s" % (manifest["name"], label, got.shape, want.shape))
        err = float(np.abs(got - want).max() / (np.abs(want).max() + 1e-12))
        worst = max(worst, err)
        if err > 1e-4:
            raise RuntimeError("%s: ONNX value %s for tap %s differs from golden (rel %g)" % (
                manifest["name"], value, label, err))
    log("   verified %d values against an ONNX-graph re-evaluation (max rel err %.2g)" % (len(checks), worst))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def gen_one(arch, small, outdir, seed, opset, log):
    name = arch + ("-w%d" % WIDTH_DIV if small else "")
    hw = 64 if (small and arch.startswith("resnet")) else 224
    in_shape = (BATCH, 3, hw, hw)
    ws = weights_seed(seed, arch)
    torch.manual_seed(ws)
    model = build_model(arch, small)
    randomize(model, torch.Generator().manual_seed(ws + 1))
    model.eval()

    x = make_input(seed, in_shape)
    in_rel = "inputs/input-%s-seed%d.npy" % ("x".join(map(str, in_shape)), seed)
    in_path = os.path.join(outdir, in_rel)
    if not os.path.exists(in_path) or not np.array_equal(np.load(in_path), x.numpy()):
        save_npy(in_path, x)

    onnx_rel = name + ".onnx"
    onnx_path = os.path.join(outdir, onnx_rel)
    export_onnx(model, x, onnx_path, opset)
    om = onnx.load(onnx_path)
    onnx.checker.check_model(om)
    node_names = set(n.name for n in om.graph.node)

    module_taps, node_taps, grad_taps = taps_for(arch, small)
    for node, *_ in node_taps:
        if node not in node_names:
            raise RuntimeError("%s: node %s not in exported graph" % (name, node))

    logits, vals, nvals, grads = run_with_taps(model, x, module_taps, node_taps, grad_taps, TARGETS)
    # determinism check: a second forward must agree bit-for-bit
    with torch.no_grad():
        again = model(x)
    if not torch.equal(again, logits):
        raise RuntimeError("%s: torch forward not deterministic (max diff %g)" % (name, (again - logits).abs().max()))

    d = os.path.join(outdir, name)
    files = []

    def rel(fn):
        r = name + "/" + fn
        files.append(r)
        return r

    manifest = {
        "name": name,
        "arch": arch,
        "variant": ("narrow: channel widths / %d, %d classes" % (WIDTH_DIV, NUM_CLASSES_SMALL)) if small
        else "torchvision full size, random weights",
        "model": onnx_rel,
        "model_sha256": sha256(onnx_path),
        "input": {"name": "input", "file": in_rel, "shape": list(in_shape)},
        "output": {"name": "logits", "file": None, "shape": None},
        "taps": [],
        "grad": {
            "objective": "sum_i logits[i, targets[i]]",
            "targets": TARGETS,
            "input": None,
            "taps": [],
        },
        "dtype": "float32",
        "layout": "NCHW",
        "seed": seed,
        "weights_seed": ws,
        "opset": opset,
        "exporter": "torch.onnx.export (TorchScript), training=PRESERVE on eval() model, do_constant_folding=False",
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
        },
    }
    fn = rel("logits.npy")
    manifest["output"]["file"] = fn
    manifest["output"]["shape"] = save_npy(os.path.join(outdir, fn), logits)
    for path in module_taps:
        fn = rel("tap-%s.npy" % path)
        shape = save_npy(os.path.join(outdir, fn), vals[path])
        node, value = onnx_value_for_module(om.graph.node, path)
        manifest["taps"].append({"module": path, "file": fn, "shape": shape,
                                 "onnx_node": node, "onnx_value": value})
    by_name = {n.name: n for n in om.graph.node}
    for node, path, k, which in node_taps:
        fn = rel(node_tap_file(node))
        shape = save_npy(os.path.join(outdir, fn), nvals[node])
        manifest["taps"].append({"node": node, "file": fn, "shape": shape,
                                 "onnx_value": by_name[node].output[0],
                                 "torch_source": {"module": path, "call": k, "value": which}})
    fn = rel("grad-input.npy")
    manifest["grad"]["input"] = {"file": fn, "shape": save_npy(os.path.join(outdir, fn), grads["input"])}
    for path in grad_taps:
        fn = rel("grad-%s.npy" % path)
        manifest["grad"]["taps"].append({"module": path, "file": fn,
                                         "shape": save_npy(os.path.join(outdir, fn), grads[path])})
    ops, attrs = onnx_summary(om)
    manifest["onnx_ops"] = ops
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    # summary
    log("%s: %s  input %s  logits %s  onnx %.2f MB, %d nodes, %d params" % (
        name, onnx_path, list(in_shape), list(logits.shape), os.path.getsize(onnx_path) / 1e6,
        len(om.graph.node), sum(p.numel() for p in model.parameters())))
    log("   logits[0,:4] %s  |logits| max %.3g" % (logits[0, :4].numpy().round(4).tolist(), logits.abs().max()))
    for t in manifest["taps"]:
        a = np.load(os.path.join(outdir, t["file"]))
        log("   tap %-32s %-18s rms %.3g  -> %s" % (t.get("node") or t["module"], a.shape, np.sqrt((a ** 2).mean()), t["onnx_value"]))
    for g in [manifest["grad"]["input"]] + manifest["grad"]["taps"]:
        a = np.load(os.path.join(outdir, g["file"]))
        log("   grad %-31s %-18s rms %.3g" % (g["file"], a.shape, np.sqrt((a ** 2).mean())))
    return name, manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--small", nargs="?", const=DEFAULT_SMALL_OUT, metavar="OUTDIR",
                      help="narrow committed fixtures (default; OUTDIR defaults to test/fixtures/torch)")
    mode.add_argument("--full", metavar="OUTDIR", help="full-size torchvision models into OUTDIR")
    ap.add_argument("--models", default=",".join(ALL_MODELS),
                    help="comma-separated subset of %s" % ",".join(ALL_MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-verify", action="store_true",
                    help="skip re-evaluating the exported ONNX graph against the goldens")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (fixed for reproducible float rounding)")
    args = ap.parse_args()

    small = args.full is None
    outdir = os.path.abspath(args.full if not small else (args.small or DEFAULT_SMALL_OUT))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ALL_MODELS:
            ap.error("unknown model %s" % m)
    torch.set_num_threads(args.threads)
    os.makedirs(outdir, exist_ok=True)
    if hasattr(torch.onnx, "dynamo_export"):
        print("note: this torch also has a dynamo exporter; using the TorchScript one")

    print("camgpu torch fixtures: mode=%s out=%s seed=%d opset=%d torch=%s torchvision=%s onnx=%s" % (
        "small" if small else "full", outdir, args.seed, args.opset, torch.__version__,
        torchvision.__version__, onnx.__version__))
    index_path = os.path.join(outdir, "index.json")
    index = {"models": {}}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    for arch in models:
        name, man = gen_one(arch, small, outdir, args.seed, args.opset, print)
        if not args.no_verify:
            verify(outdir, man, print)
        index["models"][name] = {"manifest": name + ".json", "arch": arch, "input_shape": man["input"]["shape"]}
    index["seed"] = args.seed
    index["opset"] = args.opset
    index["mode"] = "small" if small else "full"
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")

    total = 0
    print("\nfiles under %s:" % outdir)
    for root, _, fns in os.walk(outdir):
        for fn in sorted(fns):
            p = os.path.join(root, fn)
            sz = os.path.getsize(p)
            total += sz
            print("  %10d  %s" % (sz, os.path.relpath(p, outdir)))
    print("total %.2f MB in %s" % (total / 1e6, outdir))


if __name__ == "__main__":
    main()
