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
