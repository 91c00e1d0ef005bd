"""Shared pieces of the benchmarks: machine description, timing, CSV output under reports/benchmarks/."""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """CPU model, cores, torch version, GPU (if any), time: stored with every result row."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            "load_avg_1min": round(os.getloadavg()[0], 2), "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def best_time(fn: Callable[[], object], repeats: int, sync_cuda: bool = False) -> float:
    """Median seconds of ``repeats`` calls after one warm-up (the median resists other jobs' noise)."""
    fn()
    times = []
    for _ in range(repeats):
        if sync_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_results(name: str, rows: list[dict], out_dir: str | os.PathLike | None = None) -> Path:
    """Write ``rows`` (plus the machine info on every row) to ``<out_dir>/<name>.csv`` atomically."""
    from rxlib.config import reports_dir
    from rxlib.io import write_csv

    folder = Path(out_dir) if out_dir is not None else reports_dir() / "benchmarks"
    info = machine_info()
    return write_csv(folder / f"{name}.csv", pd.DataFrame([{**row, **info} for row in rows]))


def summary_markdown(out_dir: str | os.PathLike | None = None) -> str:
    """A markdown table of the latest results (loading, training, Grad-CAM CSVs) for the README."""
    import pandas as pd
    from rxlib.config import reports_dir

    folder = Path(out_dir) if out_dir is not None else reports_dir() / "benchmarks"
    rows = []
    if (folder / "loading.csv").is_file():
        for r in pd.read_csv(folder / "loading.csv").itertuples():
            rows.append(("loading", r.what, f"{r.sites_per_s:.1f} sites/s", f"×{r.ratio_to_pillow_floor:.2f} of bare Pillow decode"))
    if (folder / "training.csv").is_file():
        for r in pd.read_csv(folder / "training.csv").itertuples():
            value = f"{r.images_per_s:.1f} images/s" if pd.notna(r.images_per_s) else str(r.note)
            rows.append(("training", f"{r.what} ({r.torch_threads} threads)", value, ""))
    if (folder / "gradcam.csv").is_file():
        for r in pd.read_csv(folder / "gradcam.csv", keep_default_na=False).itertuples():
            what = f"{r.method} ({r.implementation})" if r.implementation else r.method
            ratio = f"rxlib is ×{r.ratio_to_rxlib:.2f} faster" if r.implementation == "pytorch_grad_cam" else ""
            rows.append(("CAM", what, f"{r.images_per_s:.1f} images/s", ratio))
    info = machine_info()
    lines = [f"Measured on {info.get('cpu', '?')}, {info.get('cores', '?')} cores, torch {info.get('torch', '?')}.", "",
             "| benchmark | what | rate | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)
