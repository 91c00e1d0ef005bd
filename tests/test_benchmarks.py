"""``python -m benchmarks --quick`` runs and writes its CSVs with the machine info (no timing assertions).

(Lives here because the benchmark issue owns tests/survival; it belongs in tests/test_benchmarks.py.)"""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

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


# --- benchmarks/gpu_check.py: its CPU smoke mode runs every code path (no timing assertions) ---------


def _gpu_check():
    import importlib

    return importlib.import_module("benchmarks.gpu_check")


@pytest.mark.e2e  # the whole GPU check on the CPU (DenseNet-161 steps): minutes on 2 cores, run by CI beside the suite
def test_gpu_check_cpu_smoke_writes_csv_and_markdown(tmp_path):
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu-smoke", "--out", str(tmp_path)], cwd=PROJ_ROOT,
                          capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    gpu_check = _gpu_check()
    table = pd.read_csv(tmp_path / "gpu_check.csv")
    assert list(table.columns[:len(gpu_check.COLUMNS)]) == list(gpu_check.COLUMNS)
    assert {"gpu", "torch", "cudnn_benchmark"} <= set(table.columns)
    assert set(gpu_check.SECTIONS) <= set(table["section"]) | {"train_bf16_channels_last", "train_fp32",
                                                              "train_bf16_channels_last_compiled"}
    whats = set(table["what"])
    assert {"forward_backward", "bf16_channels_last", "fp32", "bf16_channels_last_compiled", "rxlib",
            "forward_backward_floor", "pytorch_grad_cam", "bf16_channels_last_at_max_batch",
            "train_loop_from_store"} <= whats
    assert not (table["status"] == "error").any(), table[["section", "what", "note"]].to_string()
    loader = table[table["what"] == "train_loop_from_store"].iloc[0]
    assert 0.0 <= loader["loader_wait_share"] <= 1.0 and loader["images_per_s"] > 0
    assert table.loc[table["section"] == "max_batch", "batch"].iloc[0] >= 4
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.startswith("# GPU check: ") and "| section | what | status |" in markdown
    assert "CPU smoke run" in markdown  # no verdict on the target from CPU numbers


def test_gpu_check_verdict_and_markdown_of_gpu_rows():
    gpu_check = _gpu_check()
    rows = [{"section": "train", "what": "fp32", "status": "ok", "batch": 16, "images_per_s": 400.0},
            {"section": "train", "what": "bf16_channels_last", "status": "ok", "batch": 16, "images_per_s": 900.0,
             "gflop_per_image": 244.0, "share_of_bf16_peak": 0.22},
            {"section": "max_batch", "what": "bf16_channels_last_at_max_batch", "status": "ok", "batch": 256,
             "images_per_s": 1100.0, "gflop_per_image": 244.0, "share_of_bf16_peak": 0.27}]
    assert "1100 images/s" in gpu_check.verdict(rows) and "is met" in gpu_check.verdict(rows)
    assert "NOT met" in gpu_check.verdict(rows[:2])
    text = gpu_check.markdown(rows, {"gpu": "NVIDIA H200", "torch": "2.11"}, 300.0, partial=True)
    assert text.startswith("# GPU check: NVIDIA H200") and "partial" in text and "| max_batch |" in text


def test_gpu_check_largest_batch_bisects_and_respects_its_cap():
    largest_batch = _gpu_check().largest_batch
    good, bad, finished = largest_batch(lambda b: b <= 100, 16, 4096, 60)
    assert finished and good <= 100 < bad and bad - good <= good // 16  # to within 1/16
    assert largest_batch(lambda b: b <= 37, 1, 4096, 60)[0] in (36, 37)
    assert largest_batch(lambda b: True, 16, 64, 60) == (64, None, True)
    assert largest_batch(lambda b: b <= 5, 16, 64, 60) == (5, 6, True)  # below the start too
    assert largest_batch(lambda b: False, 16, 64, 60) == (0, 1, True)
    assert largest_batch(lambda b: True, 16, 4096, 0)[2] is False


def test_gpu_check_gradcam_without_pytorch_grad_cam_says_skipped(monkeypatch, capsys):
    import sys

    gpu_check = _gpu_check()
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam.utils.model_targets", None)
    args = gpu_check._settle(gpu_check.build_parser().parse_args(["--cpu-smoke"]))
    rows = gpu_check.measure_gradcam(args, 30.0, {})
    by_what = {r["what"]: r for r in rows}
    assert by_what["pytorch_grad_cam"]["status"] == "skipped"
    assert "not importable" in by_what["pytorch_grad_cam"]["note"]
    assert by_what["rxlib"]["images_per_s"] > 0 and by_what["forward_backward_floor"]["images_per_s"] > 0
    assert "comparison skipped" in capsys.readouterr().out
