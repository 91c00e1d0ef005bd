"""``python -m benchmarks --quick`` runs and writes its CSVs with the machine info (no timing assertions).

(Lives here because the benchmark issue owns tests/survival; it belongs in tests/test_benchmarks.py.)"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd

from rxlib.config import PROJ_ROOT


def test_quick_benchmarks_write_csvs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)], cwd=PROJ_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "of the Pillow floor" in done.stdout and "images/s" in done.stdout
    for name in ("loading", "training", "gradcam"):
        table = pd.read_csv(tmp_path / f"{name}.csv")
        assert len(table) and {"torch"} <= set(table.columns), name
    loading = pd.read_csv(tmp_path / "loading.csv")
    assert {"pillow_floor", "dataset", "store", "store_loader_w1", "loader_w1"} <= set(loading["what"])
    assert {"cpu", "cores", "gpu"} <= set(loading.columns)
    training = pd.read_csv(tmp_path / "training.csv")
    assert "cpu_tiny_densenet_fp32" in set(training["what"])
