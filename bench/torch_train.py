#!/usr/bin/python3
"""PyTorch training throughput (images/s) for shears' sample architectures.

The modules are the ones bench/torch_infer.py builds from samples/*.json
(checked against shears with `torch_infer.py --verify BUILD_DIR`). One
training step is what shears' trainer does with its defaults: forward in
train mode (BatchNorm batch statistics), cross-entropy, backward, SGD with
momentum 0.9, Nesterov, weight decay 5e-4, lr 0.05 on a per-step cosine
schedule. Data: one seeded random batch of Fashion-MNIST shape
([128, 1, 28, 28], labels 0-9), reused every step so only the training
step is timed. Warm-up steps, then at least 30 timed steps inside the
process (time.perf_counter); one JSON line per configuration with the
median step time, min-max, images/s from the median and from the whole
timed window, and minor page faults per step.

Every configuration runs in a fresh child process, because glibc reads
its malloc tuning from the environment at start-up: each (model, threads)
runs with default malloc and then with

    MALLOC_MMAP_THRESHOLD_=268435456  (256 MiB: glibc 2.36 takes it from the
                                       environment, though mallopt caps at 32 MiB)
    MALLOC_TRIM_THRESHOLD_=1073741824
    MALLOC_TOP_PAD_=67108864

so MB-sized activation and gradient buffers stay in the heap instead of
being mapped and unmapped every step (see /work/shared/BENCHMARKING.md,
"Allocation churn"). Override with --malloc-env.

    /usr/bin/python3 bench/torch_train.py [--arch samples/fmnist-cnn.json ...]
        [--threads 1 2] [--batch 128] [--steps 30] [--warmup 3]
        [--malloc default tuned] [--malloc-env VAR=N,VAR=N,...]

Needs Debian's python3-torch (use /usr/bin/python3). Not part of `make test`.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no bench/__pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_infer import SAMPLES, build_model, machine, set_threads  # noqa: E402

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
TUNED = "MALLOC_MMAP_THRESHOLD_=268435456,MALLOC_TRIM_THRESHOLD_=1073741824,MALLOC_TOP_PAD_=67108864"


def train_steps(arch, threads, batch, steps, warmup):
    """Runs warmup + steps training steps; returns per-step milliseconds
    and minor page faults per timed step (allocation churn shows there even
    when other processes make the times noisy)."""
    set_threads(threads)
    model, in_shape = build_model(arch)
    model.train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *in_shape, generator=g)
    y = torch.randint(0, model.out_shape[0], (batch,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=warmup + steps)
    times = []
    for i in range(warmup + steps):
        if i == warmup:
            faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=False)  # torch 1.13's default: zero in place
        loss.backward()
        opt.step()
        sched.step()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    if not torch.isfinite(loss):
        raise RuntimeError(f"{arch}: the loss diverged ({loss.item()})")
    return times, faults


def child(args):
    times, faults = train_steps(args.child, args.threads[0], args.batch, args.steps, args.warmup)
    med = statistics.median(times)
    print(json.dumps({
        "framework": "pytorch", "model": os.path.basename(args.child)[:-5], "batch": args.batch,
        "threads": args.threads[0], "malloc": args.malloc[0], "median_step_ms": round(med, 3),
        "min_step_ms": round(min(times), 3), "max_step_ms": round(max(times), 3), "steps": args.steps,
        "img_per_s": round(args.batch / med * 1e3, 1),
        "img_per_s_window": round(args.batch * len(times) / sum(times) * 1e3, 1),
        "page_faults_per_step": round(faults)}), flush=True)


def parse_env(spec):
    env = {}
    for item in filter(None, spec.split(",")):
        name, _, value = item.partition("=")
        if name not in MALLOC_VARS or not value.isdigit():
            raise SystemExit(f"torch_train: --malloc-env wants {'/'.join(MALLOC_VARS)}=N, not '{item}'")
        env[name] = value
    return env


def parent(args):
    tuned = parse_env(args.malloc_env)
    info = machine()
    info["malloc_tuned"] = tuned
    print(json.dumps({"machine": info}), flush=True)
    failed = 0
    for arch in args.arch:
        for threads in args.threads:
            for mode in args.malloc:  # alternate: default then tuned, same model and threads
                env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
                if mode == "tuned":
                    env.update(tuned)
                cmd = [sys.executable, os.path.abspath(__file__), "--child", arch, "--threads", str(threads),
                       "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--malloc", mode]
                r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
                if r.returncode != 0:
                    failed += 1
                    print(json.dumps({"model": arch, "threads": threads, "malloc": mode, "error": r.returncode}))
                else:
                    sys.stdout.write(r.stdout)
                    sys.stdout.flush()
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", default=SAMPLES)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--malloc", nargs="+", choices=("default", "tuned"), default=["default", "tuned"])
    ap.add_argument("--malloc-env", default=TUNED)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    if args.steps < 30:
        print("torch_train: --steps below 30 gives medians too noisy to compare", file=sys.stderr)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
