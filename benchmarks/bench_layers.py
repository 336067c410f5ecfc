#!/usr/bin/env python
"""Layer-by-layer time of FCRN's inference forward: where the scoring time goes.

Issue 5 (performance) asks why kwtl's bf16 scoring is as fast as it is and no faster. This
script times one forward pass of a batch of 256² patches, layer by layer, for three versions
of the same eval-mode network (same weights):

* ``eval``: the network as it is (Conv, BatchNorm, ReLU, MaxPool);
* ``folded``: ``kwtl.models._fold.fold_batchnorm`` with ``replace_layers=False`` (BatchNorm
  folded into the convolutions, ReLU after the max-pool);
* ``folded+layers``: what kwtl runs (``fold_batchnorm`` default): also
  ``kwtl.models._fold.ChannelsLastMaxPool2d`` and ``kwtl.models._fold.SingleOutputConv2d``.

Each layer's time is the median over ``--repeats`` forward passes (after warm-up), and the
whole forward is timed separately without the per-layer clock reads. The convolutions'
throughput is printed in GFLOP/s (2 · multiply-adds). The outputs are compared with the
``eval`` network's.

Run ``python benchmarks/bench_layers.py --help``; see benchmarks/README.md.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from kwtl.models import FCRN
from kwtl.models._fold import fold_batchnorm
from kwtl.models._segmenter import resolve_precision

try:  # run as a script (benchmarks/ is on sys.path)
    from _perf_common import (
        add_process_args,
        environment,
        print_env,
        print_table,
        setup_process,
        sync,
        write_json,
    )
except ImportError:  # imported as a module of the benchmarks folder
    from benchmarks._perf_common import (
        add_process_args,
        environment,
        print_env,
        print_table,
        setup_process,
        sync,
        write_json,
    )


def _layers(net):
    """The network's layers in forward order (FCRN stages, Sequentials flattened)."""
    out = []
    for stage in net.stages():
        out += list(stage) if isinstance(stage, nn.Sequential) else [stage]
    return out


def _conv_gflop(layer, x, y):
    """2 · multiply-adds of a (transposed) convolution on input x giving y, in GFLOP."""
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        macs = y.numel() * (layer.in_channels // layer.groups) * kh * kw
    elif isinstance(layer, nn.ConvTranspose2d):
        kh, kw = layer.kernel_size
        macs = x.numel() * (layer.out_channels // layer.groups) * kh * kw
    else:
        return None
    return 2.0 * macs / 1e9


def profile(net, x, dtype, args):
    """Per-layer medians (ms) and the whole-forward median (ms) of ``net`` on ``x`` under
    autocast to ``dtype`` (None: no autocast)."""
    layers = _layers(net)
    samples = [[] for _ in layers]
    shapes, gflops = [None] * len(layers), [None] * len(layers)
    whole = []
    autocast = torch.autocast(
        device_type=torch.device(args.device).type, dtype=dtype, enabled=dtype is not None
    )
    with torch.no_grad(), autocast:
        for r in range(args.warmup + args.repeats):
            h = x
            for i, layer in enumerate(layers):
                sync(args.device)
                t0 = time.perf_counter()
                out = layer(h)
                sync(args.device)
                if r >= args.warmup:
                    samples[i].append(time.perf_counter() - t0)
                if shapes[i] is None:
                    shapes[i] = tuple(out.shape)
                    gflops[i] = _conv_gflop(layer, h, out)
                h = out
            sync(args.device)
            t0 = time.perf_counter()
            y = net(x)
            sync(args.device)
            if r >= args.warmup:
                whole.append(time.perf_counter() - t0)
    rows = []
    for layer, s, shape, gf in zip(layers, samples, shapes, gflops):
        ms = 1000.0 * statistics.median(s)
        rows.append(
            {
                "layer": type(layer).__name__,
                "output": "x".join(map(str, shape[1:])),
                "ms": ms,
                "gflop_s": gf / (ms / 1000.0) if gf else None,
            }
        )
    return rows, 1000.0 * statistics.median(whole), y.float()


def run(args):
    torch.manual_seed(args.seed)
    net = FCRN(width=args.width, affine=True, init="default")
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():  # running statistics and affine parameters away from the defaults
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    net = net.eval().to(args.device)
    dtype = resolve_precision(args.precision, args.device)
    x = (
        torch.rand(args.batch_size, 1, args.patch_size, args.patch_size, generator=gen)
        .mul(2)
        .sub(1)
        .to(args.device)
    )
    if dtype is not None:  # kwtl's bf16 path runs channels-last
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    variants = {
        "eval": net,
        "folded": fold_batchnorm(net, replace_layers=False),
        "folded+layers": fold_batchnorm(net),
    }
    out = {"variants": {}}
    reference = None
    for name, module in variants.items():
        rows, whole_ms, y = profile(module, x, dtype, args)
        if reference is None:
            reference = y
        out["variants"][name] = {
            "layers": rows,
            "forward_ms": whole_ms,
            "patches_s": args.batch_size / (whole_ms / 1000.0),
            "max_abs_diff_vs_eval": float((y - reference).abs().max()),
            "max_abs_eval": float(reference.abs().max()),
        }
    return out


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    add_process_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_process(args)
    env = environment(args)
    print_env(env)
    out = run(args)
    for name, v in out["variants"].items():
        print(
            f"\n== {name}: forward {v['forward_ms']:.1f} ms ({v['patches_s']:.1f} patches/s), "
            f"max |Δ| vs eval {v['max_abs_diff_vs_eval']:.3g} (outputs up to "
            f"{v['max_abs_eval']:.3g}) =="
        )
        print_table(
            v["layers"],
            [
                ("layer", "layer", None),
                ("output C×H×W", "output", None),
                ("ms", "ms", ".2f"),
                ("GFLOP/s", "gflop_s", ".0f"),
            ],
        )
    base = out["variants"]["eval"]["forward_ms"]
    print(
        "\nforward speed-up vs eval: "
        + ", ".join(f"{k} {base / v['forward_ms']:.2f}x" for k, v in out["variants"].items())
    )
    write_json(
        args.json, {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, **out}
    )


if __name__ == "__main__":
    main()
