#!/usr/bin/python3
"""PyTorch forward latency for shears' sample architectures.

Builds, from samples/*.json, the nn.Module that core/builder.c builds (same
layers, same order, same defaults: conv padding kernel/2 and no bias,
BatchNorm eps 1e-5, AvgPool not counting padding, Linear on [F] and on
[T,D], the pre-LayerNorm transformer block with 1/sqrt(dh) scaling and
exact GELU), with the parameter names shears gives them, and times
model(x) under torch.no_grad() in eval mode: warm-up, then at least 30
timed runs inside this process (time.perf_counter, a monotonic clock),
one JSON line per (model, batch, threads) with the median, min and max.

    /usr/bin/python3 bench/torch_infer.py [--arch samples/fmnist-cnn.json ...]
        [--batch 1 64] [--threads 1 2] [--iters 30] [--warmup 5]
    /usr/bin/python3 bench/torch_infer.py --verify BUILD_DIR

--verify checks that the modules really are shears' architectures: for
each sample it has BUILD_DIR/bench/bench_forward build and export the
model, loads those exact weights into the PyTorch module by name, and
compares PyTorch's logits with what BUILD_DIR/shears computes on the same
input (max abs diff, must be <= 1e-4 + 1e-4 * |torch|).

Needs Debian's python3-torch (use /usr/bin/python3); --verify also
python3-onnx. Not part of `make test`.
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = [os.path.join(ROOT, "samples", f"fmnist-{n}.json") for n in ("cnn", "resnet", "vit")]


# ---- the architecture, as core/builder.c lays it out -----------------------

class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)); x + MLP(LN(x)).
    Attention as builder.c writes it: q/k/v Linear, [N,T,H,Dh] heads (keys
    as [N,H,Dh,T]), scores * 1/sqrt(Dh), softmax, merge, out Linear."""

    def __init__(self, d, heads, mlp):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(d // heads)
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.Module()
        for p in ("q", "k", "v", "out"):
            self.attn.add_module(p, nn.Linear(d, d))
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.add_module("fc1", nn.Linear(d, mlp))
        self.mlp.add_module("fc2", nn.Linear(mlp, d))

    def forward(self, x):
        n, t, d = x.shape
        h, dh = self.heads, d // self.heads
        y = self.ln1(x)
        q = self.attn.q(y).view(n, t, h, dh).transpose(1, 2)
        k = self.attn.k(y).view(n, t, h, dh).permute(0, 2, 3, 1)
        v = self.attn.v(y).view(n, t, h, dh).transpose(1, 2)
        p = torch.softmax((q @ k) * self.scale, dim=-1)
        a = (p @ v).transpose(1, 2).reshape(n, t, d)
        x = x + self.attn.out(a)
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.ln2(x))))


class ArchNet(nn.Module):
    """The network of a shears architecture JSON. Layers are numbered with
    one counter in build order exactly like builder.c (conv1, bn2, relu3,
    ...), so state_dict keys equal shears' initializer names."""

    def __init__(self, arch):
        super().__init__()
        self.arch_name = arch.get("name", "model")
        self._counter = 0
        self.matmul_weights = set()  # Linear on [T,D]: shears stores [in, out]
        shape = list(arch["input"])  # per-sample, no batch
        self.program = self._layers(arch["layers"], shape)
        self.out_shape = shape

    def forward(self, x):
        for f in self.program:
            x = f(x)
        return x

    def _name(self, kind):
        self._counter += 1
        return f"{kind}{self._counter}"

    def _layers(self, layers, shape):
        prog = []
        for layer in layers:
            prog.extend(self._layer(layer, shape))
        return prog

    def _layer(self, l, s):  # s: per-sample shape, updated in place
        t = l["type"]
        if t == "conv":
            return [self._conv(l, s)]
        if t == "bn":
            m = (nn.BatchNorm2d if len(s) == 3 else nn.BatchNorm1d)(s[0], eps=1e-5, momentum=0.1)
            self.add_module(self._name("bn"), m)
            return [m]
        if t in ("relu", "sigmoid", "tanh"):
            self._name(t)
            return [{"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}[t]]
        if t == "gelu":
            self._name("gelu")
            return [F.gelu]  # exact (erf) form
        if t in ("maxpool", "avgpool"):
            k = l.get("kernel", 2)
            st, pad = l.get("stride", k), l.get("pad", 0)
            self._name(t)
            s[1], s[2] = (s[1] + 2 * pad - k) // st + 1, (s[2] + 2 * pad - k) // st + 1
            if t == "maxpool":
                return [nn.MaxPool2d(k, st, pad)]
            return [nn.AvgPool2d(k, st, pad, count_include_pad=False)]  # ONNX default
        if t == "gap":
            self._name("gap")
            s[1:] = [1, 1]
            return [nn.AdaptiveAvgPool2d(1)]
        if t == "flatten":
            self._name("flatten")
            s[:] = [math.prod(s)]
            return [lambda x: torch.flatten(x, 1)]
        if t == "linear":
            m = nn.Linear(s[-1], l["out"], bias=l.get("bias", True))
            name = self._name("fc")
            self.add_module(name, m)
            if len(s) == 2:
                self.matmul_weights.add(name + ".weight")
            s[-1] = l["out"]
            return [m]
        if t == "dropout":
            m = nn.Dropout(l.get("ratio", 0.5))
            self.add_module(self._name("dropout"), m)
            return [m]
        if t == "residual":
            return [self._residual(l, s)]
        if t == "patch_embed":
            p, d = l.get("patch", 4), l.get("dim", 64)
            conv = self._conv({"out": d, "kernel": p, "stride": p, "pad": 0, "bias": True}, s)
            s[:] = [s[1] * s[2], d]
            return [conv, lambda x: x.flatten(2).transpose(1, 2)]
        if t == "cls_token":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, s[1]))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            s[0] += 1
            return [lambda x: torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)]
        if t == "pos_embed":
            self.pos_embed = nn.Parameter(torch.zeros(1, s[0], s[1]))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            return [lambda x: x + self.pos_embed]
        if t == "transformer":
            m = Block(s[1], l.get("heads", 4), l.get("mlp", 4 * s[1]))
            name = self._name("block")
            self.add_module(name, m)
            self.matmul_weights.update(f"{name}.{k}" for k in m.state_dict() if k.endswith("weight") and
                                       not k.startswith("ln"))
            self._name("gelu")  # builder.c numbers the block's GELU too
            return [m]
        if t == "layernorm":
            m = nn.LayerNorm(s[-1], eps=1e-5)
            self.add_module(self._name("ln"), m)
            return [m]
        if t == "take_cls":
            s[:] = [s[1]]
            return [lambda x: x[:, 0]]
        raise ValueError(f"unknown layer type {t!r}")

    def _conv(self, l, s):
        k = l.get("kernel", 3)
        st, pad, g = l.get("stride", 1), l.get("pad", k // 2), l.get("groups", 1)
        m = nn.Conv2d(s[0], l["out"], k, st, pad, groups=g, bias=l.get("bias", False))
        self.add_module(self._name("conv"), m)
        s[:] = [l["out"], (s[1] + 2 * pad - k) // st + 1, (s[2] + 2 * pad - k) // st + 1]
        return m

    def _residual(self, l, s):
        body_s, sc_s = list(s), list(s)
        body = self._layers(l["body"], body_s)
        short = self._layers(l.get("shortcut", []), sc_s)
        if body_s != sc_s:
            raise ValueError(f"residual body gives {body_s} but the shortcut {sc_s}")
        self._name("add")
        post = l.get("post")
        if post:
            self._name(post)
        s[:] = body_s

        def run(x):
            b = x
            for f in body:
                b = f(b)
            for f in short:
                x = f(x)
            y = b + x
            return F.relu(y) if post == "relu" else y
        return run


def load_arch(path):
    with open(path) as f:
        return json.load(f)


def build_model(path, seed=1):
    torch.manual_seed(seed)
    arch = load_arch(path)
    return ArchNet(arch), [int(d) for d in arch["input"]]


# ---- threads and the machine line ----------------------------------------------

def _openblas():
    """Debian's torch calls BLAS (OpenBLAS via libblas.so.3) for Linear and
    MatMul, and torch.set_num_threads does not reach it: OpenBLAS would use
    every core in a "1 thread" run. Returns the library or None."""
    import ctypes
    try:
        lib = ctypes.CDLL("libblas.so.3")  # the copy torch already loaded
        lib.openblas_set_num_threads.argtypes = [ctypes.c_int]
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib
    except (OSError, AttributeError):
        return None


_BLAS = _openblas()


def set_threads(n):
    """One thread count for everything: ATen/OpenMP (oneDNN convs) and
    OpenBLAS (Linear, MatMul)."""
    torch.set_num_threads(n)
    if _BLAS is not None:
        _BLAS.openblas_set_num_threads(n)


def blas_line():
    if _BLAS is None:
        return "unknown (not OpenBLAS?)"
    return f"OpenBLAS {_BLAS.openblas_get_corename().decode()}"


# ---- timing -------------------------------------------------------------------

def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__, "python": platform.python_version(),
            "conv": "oneDNN" if torch.backends.mkldnn.is_available() else "ATen", "blas": blas_line(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "unset")}


def time_forward(model, x, iters, warmup):
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def bench(args):
    info = machine()
    print(json.dumps({"machine": info}), flush=True)
    for path in args.arch:
        model, in_shape = build_model(path)
        model.eval()
        for batch in args.batch:
            x = torch.randn(batch, *in_shape, generator=torch.Generator().manual_seed(1))
            for threads in args.threads:
                set_threads(threads)
                times = time_forward(model, x, args.iters, args.warmup)
                med = statistics.median(times)
                print(json.dumps({
                    "framework": "pytorch", "model": model.arch_name, "batch": batch, "threads": threads,
                    "median_ms": round(med, 4), "min_ms": round(min(times), 4), "max_ms": round(max(times), 4),
                    "iters": args.iters, "img_per_s": round(batch / med * 1e3, 1)}), flush=True)


# ---- verification against shears ---------------------------------------------

def load_shears_weights(model, onnx_path):
    """Copies shears' initializers into the module by name. Weights of
    Linear layers on [T,D] (MatMul form, [in, out]) are transposed to
    nn.Linear's [out, in]."""
    import onnx
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_path).graph.initializer}
    state = model.state_dict()
    missing = []
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if name not in inits:
            missing.append(name)
            continue
        w = inits[name].T if name in model.matmul_weights else inits[name]
        if tuple(w.shape) != tuple(tensor.shape):
            raise ValueError(f"{name}: shears has {w.shape}, the module {tuple(tensor.shape)}")
        tensor.copy_(torch.from_numpy(np.array(w)))
    if missing:
        raise ValueError(f"not in shears' model: {', '.join(missing)}")


def verify(build):
    bf = os.path.join(build, "bench", "bench_forward")
    shears = os.path.join(build, "shears")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for path in SAMPLES:
            name = os.path.basename(path)[:-5]
            onnx_path = os.path.join(tmp, name + ".onnx")
            subprocess.run([bf, path, "--iters", "1", "--warmup", "0", "--export", onnx_path], check=True,
                           stdout=subprocess.DEVNULL)
            model, in_shape = build_model(path)
            model.eval()
            load_shears_weights(model, onnx_path)
            x = torch.randn(3, *in_shape, generator=torch.Generator().manual_seed(7))
            with torch.no_grad():
                want = model(x).numpy()
            in_npy, out_npy = os.path.join(tmp, name + ".in.npy"), os.path.join(tmp, name + ".out.npy")
            np.save(in_npy, x.numpy())
            subprocess.run([shears, "-c", f'load "{onnx_path}"; run input={in_npy} output={out_npy}'],
                           check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
            got = np.load(out_npy)
            diff = float(np.abs(got - want).max())
            good = got.shape == want.shape and np.all(np.abs(got - want) <= 1e-4 + 1e-4 * np.abs(want))
            ok = ok and bool(good)
            print(f"{'ok  ' if good else 'FAIL'} {name}: PyTorch module vs shears on shears' weights, "
                  f"batch 3, max abs diff {diff:.3g}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", default=SAMPLES)
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--verify", metavar="BUILD_DIR")
    args = ap.parse_args()
    if args.verify:
        return verify(args.verify)
    if args.iters < 30:
        print("torch_infer: --iters below 30 gives medians too noisy to compare", file=sys.stderr)
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
