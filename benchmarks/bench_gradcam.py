"""Grad-CAM throughput: rxlib.explain.grad_cam versus pytorch-grad-cam on the same model and batch.

Prints images/s of both, their ratio, and the floor (one forward + backward of the same batch, the
least any gradient-based CAM must do); writes ``reports/benchmarks/gradcam.csv`` (under
:func:`rxlib.config.reports_dir`) with the machine it ran on. Run from anywhere:

    python benchmarks/bench_gradcam.py [--arch tiny_densenet] [--size 128] [--batch 8] [--repeats 5]

Both compute the same maps (tests/explain/test_gradcam.py checks agreement to 1e-5), upsampled to
the input and min-max normalised. pytorch-grad-cam back-propagates to every parameter and copies
activations and gradients to numpy; ours takes the gradient with respect to the hooked layer only
and stays on the device.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import pandas as pd
import torch


def _time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from rxlib.config import reports_dir
    from rxlib.explain.gradcam import grad_cam
    from rxlib.io import write_csv
    from rxlib.models import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny_densenet")
    parser.add_argument("--n-classes", type=int, default=1139)
    parser.add_argument("--size", type=int, default=128, help="image side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layer", default=None, help="default: the model's Grad-CAM layer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="CSV path (default reports/benchmarks/gradcam.csv)")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.arch, args.n_classes).to(device).eval()
    layer = args.layer or ("denseblock4" if model.family == "densenet" else "layer4")
    images = torch.randn(args.batch, model.in_channels, args.size, args.size, device=device)
    cell_type = torch.eye(model.n_cell_types, device=device)[torch.arange(args.batch) % model.n_cell_types]
    classes = list(range(args.batch))

    def ours():
        return grad_cam(model, images, cell_type, classes, layer=layer, upsample=True, normalise=True)

    reference = GradCAM(model.as_classifier(cell_type), model.target_layers(layer))
    targets = [ClassifierOutputTarget(c) for c in classes]

    def theirs():
        return reference(images, targets)

    def floor():
        model.zero_grad(set_to_none=True)
        out = model(images, cell_type)["logits"]
        out[torch.arange(args.batch, device=device), classes].sum().backward()

    try:
        seconds = {"rxlib": _time(ours, args.repeats, device), "pytorch_grad_cam": _time(theirs, args.repeats, device),
                   "forward_backward_floor": _time(floor, args.repeats, device)}
    finally:
        reference.activations_and_grads.release()
    machine = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    rows = [{"method": name, "arch": args.arch, "layer": layer, "batch": args.batch, "size": args.size,
             "seconds_per_batch": s, "images_per_s": args.batch / s, "ratio_to_rxlib": s / seconds["rxlib"], **machine}
            for name, s in seconds.items()]
    frame = pd.DataFrame(rows)
    for row in rows:
        print(f"{row['method']:>24}: {row['images_per_s']:9.1f} images/s  ({row['seconds_per_batch'] * 1e3:8.1f} ms/batch)")
    print(f"rxlib is {seconds['pytorch_grad_cam'] / seconds['rxlib']:.2f}x pytorch-grad-cam; "
          f"floor / rxlib time = {seconds['forward_backward_floor'] / seconds['rxlib']:.2f}")
    out = args.out or reports_dir() / "benchmarks" / "gradcam.csv"
    write_csv(out, frame, index=False)
    print(f"wrote {out}")
    return frame


if __name__ == "__main__":
    main()
