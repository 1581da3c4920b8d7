#!/usr/bin/python3
"""A small ONNX -> torch.nn.Module interpreter, and an independent NumPy float64
evaluator of the same op set, for camgpu's CAM fixture generator
(tools/gen_cam_fixtures.py).

Why: pytorch-grad-cam (PGC) hooks torch *modules*.  Our Fashion-MNIST models exist
only as ONNX files (models/fashion-*.onnx), so to run PGC on them we rebuild each
ONNX graph as a torch module whose submodules are named after torch's ONNX scopes:

  * every ONNX node becomes one leaf module (Conv, Relu, Gemm, ...) holding its
    initializers as parameters (so PGC's `next(model.parameters())` works and the
    activations it hooks require grad);
  * a Relu node is a `torch.nn.ReLU` (subclass `ReluNode`) called with its input
    tensor, not a generic node module: Captum's GuidedBackprop / Deconvolution find
    the ReLUs to modify by `isinstance(module, nn.ReLU)` and hook a module whose
    forward takes one tensor (tools/gen_baseline_fixtures.py);
  * every scope of the node names becomes a `Scope` container module at the torch
    module path that the scope stands for: node `/layer2/layer2.0/relu_1/Relu`
    lives in scopes `layer2`, `layer2.0` and `layer2.0.relu_1`, node
    `/features/features.9/Relu` in `features` and `features.9`.  A scope is an
    identity module that the interpreter calls with the output of the *last node
    (in graph order) inside it*, right after that node ran -- the same rule
    camgpu's layer resolver uses for torch module paths (SPEC section 0).  So
    `model.get_submodule("layer2")` is a module whose forward output is the
    tensor our runtime taps for "layer2", and PGC's forward hook (and the
    tensor hook it puts on that output for the gradient) sees exactly it.

Ops: Conv, Relu, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization
(inference), Add, Gemm, MatMul, Flatten, Reshape, Identity -- what our Fashion
models and the narrowed torchvision fixtures contain.  Anything else raises.

`evaluate_numpy` is a separate float64 NumPy implementation of the same ops (no
torch, no onnxruntime; Debian's onnx 1.12 has no onnx.reference), used to check
the interpreter:  python3 tools/onnx_torch.py models/fashion-vgg.onnx
"""

import re
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _sym_pads(pads, what):
    h = len(pads) // 2
    if list(pads[:h]) != list(pads[h:]):
        raise NotImplementedError("%s: asymmetric pads %s" % (what, list(pads)))
    return list(pads[:h])


def scope_parts(node_name):
    """Scope components of a torch-exported node name, outermost first:
    '/layer2/layer2.0/relu_1/Relu' -> ['layer2', 'layer2.0', 'relu_1'] (the last
    component, the op, is not a scope)."""
    parts = [p for p in node_name.split("/") if p]
    return parts[:-1]


def scope_paths(node_name):
    """Torch module paths of the scopes a node lies in, outermost first.  torch
    names an indexed child of a Sequential '<parent attr>.<i>' in the scope, so
    'layer2.0' under 'layer2' is child '0'; other components are attribute names."""
    out = []
    path = []
    prev = None
    for p in scope_parts(node_name):
        if prev is not None and p.startswith(prev + "."):
            child = p[len(prev) + 1:]
        else:
            child = p
        path.append(_safe(child))
        out.append(".".join(path))
        prev = p
    return out


def _safe(s):
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return s if s else "_"


class Scope(nn.Module):
    """Container for the nodes of one ONNX scope; calling it is the identity (the
    interpreter calls it with the output of the scope's last node)."""

    def forward(self, x):
        return x


class Node(nn.Module):
    """One ONNX node. Initializer inputs are parameters of this module."""

    def __init__(self, node, consts):
        super().__init__()
        self.onnx_name = node.name
        self.op = node.op_type
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs = _attrs(node)
        self._const_keys = {}
        for i, name in enumerate(node.input):
            if name in consts:
                key = "c%d" % i
                arr = consts[name]
                if arr.dtype.kind == "f":
                    self.register_parameter(key, nn.Parameter(torch.from_numpy(arr.astype(np.float32).copy())))
                else:
                    self.register_buffer(key, torch.from_numpy(arr.copy()))
                self._const_keys[i] = key
        if self.op not in _TORCH_OPS:
            raise NotImplementedError("onnx_torch: op %s (node %s)" % (self.op, node.name))

    def operand(self, i, env):
        if i in self._const_keys:
            return getattr(self, self._const_keys[i])
        name = self.inputs[i]
        return env[name] if name else None

    def forward(self, env):
        ins = [self.operand(i, env) for i in range(len(self.inputs))]
        return _TORCH_OPS[self.op](ins, self.attrs, self.onnx_name)


class ReluNode(nn.ReLU):
    """An ONNX Relu node as a torch.nn.ReLU module (not in place), so that hooks keyed
    on the nn.ReLU type (Captum's GuidedBackprop) see it.  Called with the input
    tensor itself; same bookkeeping attributes as Node."""

    def __init__(self, node, consts):
        super().__init__(inplace=False)
        self.onnx_name = node.name
        self.op = node.op_type
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs = _attrs(node)
        if len(self.inputs) != 1 or self.inputs[0] in consts:
            raise NotImplementedError("onnx_torch: Relu node %s on a constant" % node.name)


def make_node(node, consts):
    return ReluNode(node, consts) if node.op_type == "Relu" else Node(node, consts)


def _t_conv(i, a, name):
    return F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, stride=a.get("strides", 1),
                    padding=_sym_pads(a.get("pads", [0, 0, 0, 0]), name),
                    dilation=a.get("dilations", 1), groups=a.get("group", 1))


def _t_maxpool(i, a, name):
    if a.get("storage_order", 0) != 0:
        raise NotImplementedError(name + ": storage_order")
    return F.max_pool2d(i[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]),
                        _sym_pads(a.get("pads", [0, 0, 0, 0]), name), a.get("dilations", 1),
                        bool(a.get("ceil_mode", 0)))


def _t_avgpool(i, a, name):
    return F.avg_pool2d(i[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]),
                        _sym_pads(a.get("pads", [0, 0, 0, 0]), name), bool(a.get("ceil_mode", 0)),
                        bool(a.get("count_include_pad", 0)))


def _t_bn(i, a, name):
    if a.get("training_mode", 0) != 0:
        raise NotImplementedError(name + ": training_mode BatchNormalization")
    return F.batch_norm(i[0], i[3], i[4], i[1], i[2], False, 0.0, a.get("epsilon", 1e-5))


def _t_gemm(i, a, name):
    A = i[0].t() if a.get("transA", 0) else i[0]
    B = i[1].t() if a.get("transB", 0) else i[1]
    y = a.get("alpha", 1.0) * (A @ B)
    if len(i) > 2 and i[2] is not None:
        y = y + a.get("beta", 1.0) * i[2]
    return y


def _t_flatten(i, a, name):
    ax = a.get("axis", 1)
    x = i[0]
    if ax < 0:
        ax += x.dim()
    return x.reshape(int(np.prod(x.shape[:ax])), -1)


def _t_reshape(i, a, name):
    shape = [int(s) for s in i[1].tolist()]
    x = i[0]
    if not a.get("allowzero", 0):
        shape = [x.shape[k] if s == 0 else s for k, s in enumerate(shape)]
    return x.reshape(shape)


_TORCH_OPS = {
    "Conv": _t_conv,
    "Relu": lambda i, a, n: F.relu(i[0]),
    "MaxPool": _t_maxpool,
    "AveragePool": _t_avgpool,
    "GlobalAveragePool": lambda i, a, n: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "BatchNormalization": _t_bn,
    "Add": lambda i, a, n: i[0] + i[1],
    "Gemm": _t_gemm,
    "MatMul": lambda i, a, n: torch.matmul(i[0], i[1]),
    "Flatten": _t_flatten,
    "Reshape": _t_reshape,
    "Identity": lambda i, a, n: i[0],
}


class OnnxModule(nn.Module):
    """torch module that runs an ONNX graph node by node (see the module doc)."""

    def __init__(self, model):
        super().__init__()
        g = model.graph
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                consts[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
        init_names = set(consts)
        self.input_names = [i.name for i in g.input if i.name not in init_names]
        if len(self.input_names) != 1:
            raise NotImplementedError("onnx_torch: graphs with one input only")
        self.output_name = g.output[0].name
        self._order = []  # (leaf module path, [scope paths closed after it, innermost first])
        last_in_scope = {}
        nodes = [n for n in g.node if n.op_type != "Constant"]
        for k, n in enumerate(nodes):
            for sp in scope_paths(n.name):
                last_in_scope[sp] = k
        for k, n in enumerate(nodes):
            scopes = scope_paths(n.name)
            parent = self
            for sp in scopes:
                child = sp.split(".")[-1]
                existing = getattr(parent, child, None)
                if existing is None:
                    parent.add_module(child, Scope())
                elif not isinstance(existing, Scope):
                    raise NotImplementedError("onnx_torch: scope %s clashes with a node module" % sp)
                parent = getattr(parent, child)
            leaf = _safe(n.name.split("/")[-1] if n.name else n.op_type)
            name, j = leaf, 1
            while hasattr(parent, name):
                j += 1
                name = "%s_%d" % (leaf, j)
            path = (scopes[-1] + "." if scopes else "") + name
            parent.add_module(name, make_node(n, consts))
            closes = [sp for sp in reversed(scopes) if last_in_scope[sp] == k]
            self._order.append((path, closes))
        self.scope_nodes = {sp: nodes[k].name for sp, k in last_in_scope.items()}
        # The node and scope modules as built, for scopes replaced by another module (below).
        self._built = {path: self.get_submodule(path) for path, _ in self._order}
        self._built.update({sp: self.get_submodule(sp) for sp in last_in_scope})

    def _module(self, path):
        """The node or scope module at `path`.  When an enclosing scope has been swapped for
        another module (pytorch-grad-cam's AblationCAM replaces its target layer by an
        AblationLayer with replace_layer_recursive), the path no longer leads inside it: the
        modules inside run as built, and the replacement is called with the scope's output
        where the scope was (see forward), so its output takes the scope's place as it would
        in torch."""
        try:
            return self.get_submodule(path)
        except AttributeError:
            return self._built[path]

    def forward(self, x):
        env = {self.input_names[0]: x}
        for path, closes in self._order:
            node = self._module(path)
            if len(node.outputs) != 1:
                raise NotImplementedError("onnx_torch: multi-output node %s" % node.onnx_name)
            y = node(env[node.inputs[0]]) if isinstance(node, ReluNode) else node(env)
            for sp in closes:
                y = self._module(sp)(y)
            env[node.outputs[0]] = y
        return env[self.output_name]


def load(path):
    return OnnxModule(onnx.load(path))


# --------------------------------------------------------------------------
# Independent NumPy float64 evaluator
# --------------------------------------------------------------------------


def _windows(x, kh, kw, sh, sw, dh, dw):
    """x: N,C,H,W (already padded) -> view N,C,OH,OW,kh,kw."""
    from numpy.lib.stride_tricks import sliding_window_view
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(x, (eh, ew), axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def _np_pad(x, pads, value):
    h = len(pads) // 2
    widths = [(0, 0), (0, 0)] + [(pads[k], pads[k + h]) for k in range(h)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def _n_conv(i, a):
    x, w = i[0], i[1]
    kh, kw = w.shape[2:]
    s = a.get("strides", [1, 1])
    d = a.get("dilations", [1, 1])
    g = a.get("group", 1)
    xp = _np_pad(x, a.get("pads", [0, 0, 0, 0]), 0.0)
    cin = x.shape[1] // g
    cout = w.shape[0] // g
    outs = []
    for k in range(g):
        win = _windows(xp[:, k * cin:(k + 1) * cin], kh, kw, s[0], s[1], d[0], d[1])
        outs.append(np.einsum("ncyxij,ocij->noyx", win, w[k * cout:(k + 1) * cout], optimize=True))
    y = np.concatenate(outs, axis=1)
    if len(i) > 2 and i[2] is not None:
        y = y + i[2][None, :, None, None]
    return y


def _n_pool(i, a, kind):
    if a.get("ceil_mode", 0):
        raise NotImplementedError("ceil_mode")
    kh, kw = a["kernel_shape"]
    s = a.get("strides", a["kernel_shape"])
    d = a.get("dilations", [1, 1])
    pads = a.get("pads", [0, 0, 0, 0])
    x = i[0]
    if kind == "max":
        win = _windows(_np_pad(x, pads, -np.inf), kh, kw, s[0], s[1], d[0], d[1])
        return win.max(axis=(4, 5))
    win = _windows(_np_pad(x, pads, 0.0), kh, kw, s[0], s[1], 1, 1)
    total = win.sum(axis=(4, 5))
    if a.get("count_include_pad", 0) or not any(pads):
        return total / (kh * kw)
    ones = _windows(_np_pad(np.ones_like(x[:1, :1]), pads, 0.0), kh, kw, s[0], s[1], 1, 1).sum(axis=(4, 5))
    return total / ones


def _n_gemm(i, a):
    A = i[0].T if a.get("transA", 0) else i[0]
    B = i[1].T if a.get("transB", 0) else i[1]
    y = a.get("alpha", 1.0) * (A @ B)
    if len(i) > 2 and i[2] is not None:
        y = y + a.get("beta", 1.0) * i[2]
    return y


def _n_bn(i, a):
    x, scale, bias, mean, var = i
    eps = a.get("epsilon", 1e-5)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) * scale.reshape(sh) + bias.reshape(sh)


def _n_flatten(i, a):
    ax = a.get("axis", 1)
    return i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)


def _n_reshape(i, a):
    shape = [int(s) for s in i[1]]
    shape = [i[0].shape[k] if s == 0 and not a.get("allowzero", 0) else s for k, s in enumerate(shape)]
    return i[0].reshape(shape)


_NP_OPS = {
    "Conv": _n_conv,
    "Relu": lambda i, a: np.maximum(i[0], 0.0),
    "MaxPool": lambda i, a: _n_pool(i, a, "max"),
    "AveragePool": lambda i, a: _n_pool(i, a, "avg"),
    "GlobalAveragePool": lambda i, a: i[0].mean(axis=tuple(range(2, i[0].ndim)), keepdims=True),
    "BatchNormalization": _n_bn,
    "Add": lambda i, a: i[0] + i[1],
    "Gemm": _n_gemm,
    "MatMul": lambda i, a: np.matmul(i[0], i[1]),
    "Flatten": _n_flatten,
    "Reshape": _n_reshape,
    "Identity": lambda i, a: i[0],
}


def evaluate_numpy(model, x, want=None):
    """Runs the ONNX graph in float64 NumPy; returns {value name: array} for every
    value (or only the names in `want`, plus the output)."""
    g = model.graph
    env = {}
    for t in g.initializer:
        arr = numpy_helper.to_array(t)
        env[t.name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    inputs = [i.name for i in g.input if i.name not in env]
    env[inputs[0]] = np.asarray(x, dtype=np.float64)
    for n in g.node:
        a = _attrs(n)
        if n.op_type == "Constant":
            env[n.output[0]] = numpy_helper.to_array(a["value"])
            continue
        if n.op_type not in _NP_OPS:
            raise NotImplementedError("evaluate_numpy: op %s" % n.op_type)
        env[n.output[0]] = _NP_OPS[n.op_type]([env[v] if v else None for v in n.input], a)
    return env


def check(path, x, tol=1e-5):
    """Interpreter (float32 torch) vs NumPy float64 evaluator: returns (max abs
    difference of the logits, max |logit|); raises when the difference exceeds
    tol * max(1, max |logit|)."""
    m = onnx.load(path)
    ref = evaluate_numpy(m, x)[m.graph.output[0].name]
    mod = OnnxModule(m).eval()
    with torch.no_grad():
        got = mod(torch.from_numpy(np.asarray(x, dtype=np.float32))).double().numpy()
    err = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    if err > tol * max(1.0, scale):
        raise RuntimeError("%s: onnx_torch logits differ from the NumPy evaluator by %g (max |logit| %g)" % (path, err, scale))
    return err, scale


if __name__ == "__main__":
    for p in sys.argv[1:]:
        m = onnx.load(p)
        dims = [d.dim_value or 1 for d in m.graph.input[0].type.tensor_type.shape.dim]
        dims[0] = 2
        x = np.random.default_rng(0).standard_normal(dims).astype(np.float32)
        mod = OnnxModule(m)
        print(p, "scopes:", ", ".join(sorted(mod.scope_nodes)))
        print("  max |torch - numpy| = %.3g (max |logit| %.3g)" % check(p, x))
