"""CAM throughput: rxlib's Grad-CAM, Grad-CAM++ and LayerCAM versus pytorch-grad-cam, same model and batch.

Prints images/s of each member in both implementations (median over rounds), the measured ratio
(pytorch-grad-cam's time over rxlib's: the median over rounds of calls made one after the other),
and the floor (one forward + backward of the same batch, the least any gradient-based CAM that
back-propagates to the parameters must do); writes ``reports/benchmarks/gradcam.csv`` (under
:func:`rxlib.config.reports_dir`) with the machine it ran on. Run from anywhere:

    python benchmarks/bench_gradcam.py [--arch tiny_densenet] [--size 128] [--batch 8] [--repeats 5]
                                       [--threads N]

Both compute the same maps (tests/explain/test_cam.py checks agreement to 1e-5), upsampled to the
input and min-max normalised. pytorch-grad-cam back-propagates to every parameter and copies
activations and gradients to numpy; ours runs the network before the hooked layer without an
autograd graph, takes the gradient with respect to that layer only, and stays on the device. The calls are timed in turns (one of each per round, median over rounds),
so that load from other work on the machine falls on all alike; each pytorch-grad-cam call builds
its CAM object in a ``with`` block, so that its hooks are on the layer only while it runs.
Nothing here asserts a timing: the ratios are printed and stored.
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

#: rxlib member -> pytorch-grad-cam class, by the method's name.
MEMBERS: dict[str, tuple[str, str]] = {"Grad-CAM": ("grad_cam", "GradCAM"),
                                       "Grad-CAM++": ("grad_cam_plus_plus", "GradCAMPlusPlus"),
                                       "LayerCAM": ("layer_cam", "LayerCAM")}


def timed_in_turns(fns: dict, repeats: int, device: torch.device) -> dict[object, list[float]]:
    """Seconds of each call of each function, calling them in turns ``repeats`` times after one warm-up each."""
    times: dict[object, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 1):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_:  # round 0 is the warm-up
                times[name].append(time.perf_counter() - start)
    return times


def _machine(device: torch.device) -> dict:
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from rxlib.config import reports_dir
    from rxlib.explain import cam
    from rxlib.io import write_csv
    from rxlib.models import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny_densenet")
    parser.add_argument("--n-classes", type=int, default=1139)
    parser.add_argument("--size", type=int, default=128, help="image side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--layer", default=None, help="default: the architecture's CAM layer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="CSV path (default reports/benchmarks/gradcam.csv)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.arch, args.n_classes).to(device).eval()
    layer = args.layer or cam.default_layer(model)
    images = torch.randn(args.batch, model.in_channels, args.size, args.size, device=device)
    cell_type = torch.eye(model.n_cell_types, device=device)[torch.arange(args.batch) % model.n_cell_types]
    classes = list(range(args.batch))
    classifier, target_layers = model.as_classifier(cell_type), model.target_layers(layer)
    targets = [ClassifierOutputTarget(c) for c in classes]

    def ours(member: Callable) -> Callable[[], object]:
        return lambda: member(model, images, cell_type, classes, layer=layer, upsample=True, normalise=True)

    def theirs(cls: type) -> Callable[[], object]:
        def run():
            with cls(classifier, target_layers) as reference:
                return reference(images, targets)
        return run

    def floor():
        model.zero_grad(set_to_none=True)
        out = model(images, cell_type)["logits"]
        out[torch.arange(args.batch, device=device), classes].sum().backward()

    fns: dict[tuple[str, str], Callable[[], object]] = {}
    for method, (ours_name, theirs_name) in MEMBERS.items():
        fns[(method, "rxlib")] = ours(getattr(cam, ours_name))
        fns[(method, "pytorch_grad_cam")] = theirs(getattr(pytorch_grad_cam, theirs_name))
    fns[("forward_backward_floor", "")] = floor
    times = timed_in_turns(fns, args.repeats, device)
    seconds = {key: statistics.median(values) for key, values in times.items()}
    machine = _machine(device)
    rows = []
    for (method, implementation), s in seconds.items():
        # the ratio of calls made one after the other (median over rounds): load elsewhere cancels
        own = times[(method if method in MEMBERS else "Grad-CAM", "rxlib")]
        ratio = statistics.median(t / o for t, o in zip(times[(method, implementation)], own))
        rows.append({"method": method, "implementation": implementation, "arch": args.arch, "layer": layer,
                     "batch": args.batch, "size": args.size, "seconds_per_batch": s, "images_per_s": args.batch / s,
                     "ratio_to_rxlib": ratio, **machine})
    frame = pd.DataFrame(rows)
    for row in rows:
        print(f"{row['method']:>22} {row['implementation']:>16}: {row['images_per_s']:9.1f} images/s  "
              f"({row['seconds_per_batch'] * 1e3:8.1f} ms/batch)")
    ratios = {(row["method"], row["implementation"]): row["ratio_to_rxlib"] for row in rows}
    for method in MEMBERS:
        print(f"{method}: rxlib is {ratios[(method, 'pytorch_grad_cam')]:.2f}x pytorch-grad-cam")
    print(f"floor / rxlib Grad-CAM time = {ratios[('forward_backward_floor', '')]:.2f}")
    out = args.out or reports_dir() / "benchmarks" / "gradcam.csv"
    write_csv(out, frame, index=False)
    print(f"wrote {out}")
    return frame


if __name__ == "__main__":
    main()
