"""A truncated, empty or foreign checkpoint gets a one-line error naming the file (CheckpointError;
exit status 2 from ``rxlib train`` and ``python -m rxlib.train``), not a traceback from inside torch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from killing import child_env
from rxlib.cli import main
from rxlib.train import CheckpointError, latest_checkpoint, load_trained_model
from rxlib.train.loop import load_checkpoint

TRAIN = {"epochs": 2, "batch_size": 8, "embedding_dim": 16, "max_batches_per_epoch": 2}


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not a checkpoint\n" * 100)
    elif how == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)  # a valid torch file, not an rxlib checkpoint


@pytest.fixture
def finished_run(survival_synth, tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "1")
    out = tmp_path / "run"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"profile": "smoke", "data_root": str(survival_synth), "out_dir": str(out),
                                  "train": TRAIN}))
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    # as if killed after the last checkpoint: the finished-run markers are gone, the checkpoint stays
    for name in ("model.pt", "predictions.csv"):
        (out / name).unlink()
    return config, out


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "foreign"])
def test_bad_checkpoint_is_a_clear_error(finished_run, how):
    _, out = finished_run
    checkpoint = latest_checkpoint(out)
    _damage(checkpoint, how)
    with pytest.raises(CheckpointError, match=str(checkpoint)):
        load_checkpoint(checkpoint)


def test_rxlib_train_cli_reports_a_truncated_checkpoint(finished_run, capsys):
    config, out = finished_run
    checkpoint = latest_checkpoint(out)
    _damage(checkpoint, "truncated")
    assert main(["train", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "rxlib train: error:" in err and str(checkpoint) in err and "truncated or corrupt" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_truncated_model_file(finished_run, tmp_path):
    _, out = finished_run
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(latest_checkpoint(out).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_trained_model(model_file)


def test_python_m_rxlib_train_reports_a_truncated_checkpoint(finished_run, tmp_path):
    config, out = finished_run
    checkpoint = latest_checkpoint(out)
    _damage(checkpoint, "truncated")
    done = subprocess.run([sys.executable, "-m", "rxlib.train", "--config", str(config), "--quiet"],
                          env=child_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert str(checkpoint) in done.stderr and "Traceback" not in done.stderr
