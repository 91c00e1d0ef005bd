"""Training throughput: images/s of a training step (forward, composite loss, backward, Adam).

- CPU: the smoke profile's ``tiny_densenet`` (batch 16, 6x64x64), always run.
- CUDA (when present; else prints "skipped: no CUDA"): DenseNet-161 on 6x512x512 (batch 16), fp32
  versus bf16 autocast + channels-last, and the latter under ``torch.compile`` (``--compile``); the
  model's FLOPs per step from :class:`torch.utils.flop_counter.FlopCounterMode`, the achieved FLOP/s
  and its share of the measured bf16 matmul rate (8192^3 matmuls) of the same GPU.

Writes ``reports/benchmarks/training.csv``.

    python benchmarks/bench_training.py [--quick] [--compile] [--batch 16]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_time, write_results  # noqa: E402


def _step_fn(model, optimizer, images, cell, labels, autocast_dtype=None):
    from rxlib.train.losses import composite_loss

    def step():
        with torch.autocast("cuda", dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            out = model(images, cell)
            loss = composite_loss(out["logits"].float(), out["cosine"].float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def _setup(arch, n_classes, batch, size, device, channels_last=False, embedding_dim=128, memory_efficient=False):
    from rxlib.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, n_classes, embedding_dim=embedding_dim, memory_efficient=memory_efficient).to(device)
    images = torch.randn(batch, 6, size, size, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    cell = torch.nn.functional.one_hot(torch.arange(batch, device=device) % 4, 4).float()
    labels = torch.arange(batch, device=device) % n_classes
    return model, torch.optim.Adam(model.parameters(), lr=1e-4), images, cell, labels


def step_flops(model, images, cell, labels) -> int:
    """FLOPs of one forward + backward (FlopCounterMode counts matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rxlib.train.losses import composite_loss

    with FlopCounterMode(display=False) as counter:
        out = model(images, cell)
        composite_loss(out["logits"].float(), out["cosine"].float(), labels).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_rate(dtype=torch.bfloat16, n=8192, repeats=10) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    seconds = best_time(lambda: a @ b, repeats, sync_cuda=True)
    return 2 * n ** 3 / seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []

    size, batch, repeats = (32, 8, 2) if args.quick else (64, args.batch, 5)
    model, opt, images, cell, labels = _setup("tiny_densenet", 50, batch, size, "cpu")
    seconds = best_time(_step_fn(model, opt, images, cell, labels), repeats)
    rows.append({"what": "cpu_tiny_densenet_fp32", "device": "cpu", "batch": batch, "image_size": size,
                 "images_per_s": batch / seconds, "step_s": seconds})
    print(f"training tiny_densenet on CPU ({torch.get_num_threads()} threads): {batch / seconds:.1f} images/s "
          f"(batch {batch}, 6x{size}x{size})")

    if not torch.cuda.is_available():
        print("training DenseNet-161 on GPU: skipped: no CUDA")
        rows.append({"what": "gpu_densenet161", "device": "none", "note": "skipped: no CUDA"})
    else:
        size, batch, repeats = (128, 4, 3) if args.quick else (512, args.batch, 10)
        peak = matmul_rate()
        print(f"bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s")
        base = None
        variants = [("fp32", None, False, False), ("bf16_channels_last", torch.bfloat16, True, False)]
        if args.compile:
            variants.append(("bf16_channels_last_compiled", torch.bfloat16, True, True))
        for name, dtype, cl, compiled in variants:
            model, opt, images, cell, labels = _setup("densenet161", 1139, batch, size, "cuda", channels_last=cl,
                                                      embedding_dim=1024, memory_efficient=False)
            flops = step_flops(model, images, cell, labels)
            net = torch.compile(model) if compiled else model
            seconds = best_time(_step_fn(net, opt, images, cell, labels, dtype), repeats, sync_cuda=True)
            rate = batch / seconds
            base = base or rate
            rows.append({"what": f"gpu_densenet161_{name}", "device": torch.cuda.get_device_name(0), "batch": batch,
                         "image_size": size, "images_per_s": rate, "step_s": seconds, "flops_per_step": flops,
                         "achieved_tflops": flops / seconds / 1e12, "bf16_matmul_tflops": peak / 1e12,
                         "share_of_matmul_rate": flops / seconds / peak, "speedup_vs_fp32": rate / base})
            print(f"training densenet161 {name}: {rate:.1f} images/s, x{rate / base:.2f} of fp32, "
                  f"{flops / seconds / 1e12:.1f} TFLOP/s = {flops / seconds / peak:.1%} of the bf16 matmul rate")
            del model, opt, net
            torch.cuda.empty_cache()
    path = write_results("training", rows, args.out)
    print(f"-> {path}")
    return rows


if __name__ == "__main__":
    main()
