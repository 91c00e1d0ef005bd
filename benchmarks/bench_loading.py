"""Loading throughput: sites/s from six PNGs to a normalised tensor, against the bare Pillow decode.

Measured on a synthetic RxRx1 generated for the run (same PNG encoder as the real release):

- ``pillow_floor``: open + decode the six PNGs with Pillow, nothing else (the least any PNG reader does);
- ``dataset``: ``RxRx1Dataset(normalize='image')[i]`` (decode, checks, float32, normalisation);
- ``loader_wN``: the same through a DataLoader with N workers (batch 8); per-worker rate too;
- ``cache``/``cache_loader_wN``: ``RxRx1Dataset(..., cache=...)``: decoded uint8 memory-mapped (built once,
  build time reported).

Prints each rate and its ratio to the floor; writes ``reports/benchmarks/loading.csv``.

    python benchmarks/bench_loading.py [--quick] [--size 256] [--sites 96]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402


def _rate(fn, n: int, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--out", default=None, help="output folder (default reports/benchmarks)")
    args = parser.parse_args(argv)
    size = 64 if args.quick else args.size
    workers = [1, 2] if args.quick else args.workers

    import torch
    from torch.utils.data import DataLoader

    from rxlib.data import RxRx1Dataset
    from rxlib.data.images import channel_paths
    from rxlib.synth import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "data", profile="smoke", seed=0, progress=False, image_size=size,
                        n_treatments=6, n_junk=1, n_positive_controls=1, experiments=(("HEPG2", 1, 1), ("U2OS", 1, 1)),
                        n_plates=1, n_sites=1 if args.quick else 2, calibration_sites=2)
        plain = RxRx1Dataset(root, normalize="image")
        n = len(plain)
        stems = list(plain.table["image_stem"])

        def pillow():
            for stem in stems:
                for path in channel_paths(root, stem):
                    with Image.open(path) as im:
                        np.asarray(im)

        def items(ds):
            return lambda: [ds[i] for i in range(len(ds))]

        def loader(ds, w):
            return lambda: [b for b in DataLoader(ds, batch_size=8, num_workers=w, persistent_workers=False)]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # decoding is single-threaded; keep torch from competing with the workers
        rows = []
        floor = _rate(pillow, n)
        rows.append({"what": "pillow_floor", "workers": 0, "sites_per_s": floor})
        rows.append({"what": "dataset", "workers": 0, "sites_per_s": _rate(items(plain), n)})
        for w in workers:
            rows.append({"what": f"loader_w{w}", "workers": w, "sites_per_s": _rate(loader(plain, w), n)})
        start = time.perf_counter()
        cached = RxRx1Dataset(root, normalize="image", cache=Path(tmp) / "cache")
        build_s = time.perf_counter() - start
        rows.append({"what": "cache_build", "workers": 0, "sites_per_s": n / build_s})
        rows.append({"what": "cache", "workers": 0, "sites_per_s": _rate(items(cached), n)})
        for w in workers:
            rows.append({"what": f"cache_loader_w{w}", "workers": w, "sites_per_s": _rate(loader(cached, w), n)})
        torch.set_num_threads(threads)
    for row in rows:
        row.update(image_size=size, n_sites=n, ratio_to_pillow_floor=row["sites_per_s"] / floor,
                   per_worker=row["sites_per_s"] / max(1, row["workers"]))
        print(f"loading {row['what']:>18}: {row['sites_per_s']:9.1f} sites/s  x{row['ratio_to_pillow_floor']:.2f} "
              f"of the Pillow floor  ({row['per_worker']:.1f} per worker; {size}x{size}, {n} sites)")
    path = write_results("loading", rows, args.out)
    print(f"-> {path}")
    return rows


if __name__ == "__main__":
    main()
