"""Training throughput: images/s of a training step (forward, composite loss, backward, Adam).

- CPU: the smoke profile's ``tiny_densenet`` (batch 16, 6x64x64), always run, in the default and in the
  channels-last memory format (the smoke profile's).
- CUDA (when present; else prints "skipped: no CUDA"): the paper profile's training step as
  :func:`rxlib.train.train` runs it (:func:`rxlib.train.loop.train_step`: DenseNet-161 with its
  memory-efficient checkpointed dense layers, 1,139-class heads, composite loss, CutMix, Adam) on
  6x512x512 (batch 16), fp32 versus bf16 autocast + channels-last, and the latter under
  ``torch.compile`` (``--compile``); the model's FLOPs per image from
  :class:`torch.utils.flop_counter.FlopCounterMode` (meta device), the achieved FLOP/s and its share of
  the measured bf16 matmul rate (8192^3 matmuls) of the same GPU. ``benchmarks/gpu_check.py`` measures
  more (largest batch, Grad-CAM, the data loader) within a time budget.

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
    # the smoke profile trains channels-last on the CPU too (rxlib.profiles): the measured ratio says why
    model, opt, images, cell, labels = _setup("tiny_densenet", 50, batch, size, "cpu", channels_last=True)
    last = best_time(_step_fn(model, opt, images, cell, labels), repeats)
    rows.append({"what": "cpu_tiny_densenet_fp32_channels_last", "device": "cpu", "batch": batch, "image_size": size,
                 "images_per_s": batch / last, "step_s": last, "speedup_vs_fp32": seconds / last})
    print(f"training tiny_densenet on CPU, channels-last: {batch / last:.1f} images/s, x{seconds / last:.2f} of the "
          "default memory format")

    if not torch.cuda.is_available():
        print("training DenseNet-161 on GPU: skipped: no CUDA")
        rows.append({"what": "gpu_densenet161", "device": "none", "note": "skipped: no CUDA"})
    else:
        import argparse as _argparse

        import gpu_check

        size, batch, repeats = (128, 4, 3) if args.quick else (512, args.batch, 10)
        peak = matmul_rate()
        print(f"bf16 matmul rate: {peak / 1e12:.1f} TFLOP/s")
        settings = _argparse.Namespace(device="cuda", batch=batch, size=size, cpu_smoke=False)
        flops = {}
        gpu_check.measure_flops(settings, 60.0, flops)
        flops_per_image = flops["gflop_per_image"] * 1e9
        base = None
        variants = [("fp32", "float32", False, False), ("bf16_channels_last", "bfloat16", True, False)]
        if args.compile:
            variants.append(("bf16_channels_last_compiled", "bfloat16", True, True))
        for name, amp_dtype, cl, compiled in variants:
            config = gpu_check.paper_config(settings, amp_dtype=amp_dtype, channels_last=cl)
            model, opt, step = gpu_check._trainer(config, compiled=compiled)
            inputs = gpu_check._random_batch(config, batch, size, torch.device("cuda"))
            seconds = best_time(lambda: step(*inputs), repeats, sync_cuda=True)
            rate = batch / seconds
            base = base or rate
            flops_step = flops_per_image * batch
            rows.append({"what": f"gpu_densenet161_{name}", "device": torch.cuda.get_device_name(0), "batch": batch,
                         "image_size": size, "images_per_s": rate, "step_s": seconds, "flops_per_step": flops_step,
                         "memory_efficient": config.memory_efficient,
                         "achieved_tflops": flops_step / seconds / 1e12, "bf16_matmul_tflops": peak / 1e12,
                         "share_of_matmul_rate": flops_step / seconds / peak, "speedup_vs_fp32": rate / base})
            print(f"training densenet161 {name}: {rate:.1f} images/s, x{rate / base:.2f} of fp32, "
                  f"{flops_step / seconds / 1e12:.1f} TFLOP/s = {flops_step / seconds / peak:.1%} of the bf16 matmul rate")
            del model, opt, step, inputs
            torch.cuda.empty_cache()
    path = write_results("training", rows, args.out)
    print(f"-> {path}")
    return rows


if __name__ == "__main__":
    main()
