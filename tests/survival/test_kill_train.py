"""``rxlib train`` killed with SIGKILL at a random moment and started again ends with the same
weights, bit for bit, as a run never interrupted (CPU, one thread, same seed)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pandas as pd
import torch

from killing import child_env, kill_when, start
from rxlib.train.loop import checkpoint_path, load_checkpoint

EPOCHS = 10


def _config(tmp_path, data_root, out):
    path = tmp_path / f"{out.name}.json"
    path.write_text(json.dumps({"profile": "smoke", "data_root": str(data_root), "out_dir": str(out),
                                "train": {"epochs": EPOCHS, "batch_size": 8, "embedding_dim": 16, "cutmix": True,
                                          "pseudo_label": True, "pseudo_t1": 2, "pseudo_t2": 5,
                                          "keep_checkpoints": 2}}))
    return path


def _train(config, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rxlib.cli", "train", "--config", str(config), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=180)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), f"{what}: {key}"


def test_killed_training_resumes_bit_for_bit(survival_synth, tmp_path, kill_rng):
    env = child_env(tmp_path)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = _train(_config(tmp_path, survival_synth, reference), env)
    assert done.returncode == 0, done.stderr

    config = _config(tmp_path, survival_synth, killed)
    kills = 0
    for attempt in range(2):  # kill it twice, at random points after 0 .. EPOCHS-2 finished epochs
        after = kill_rng.randrange(0, EPOCHS - 1)
        delay = kill_rng.uniform(0.0, 0.2)
        proc = start(["-m", "rxlib.cli", "train", "--config", str(config), "--quiet"], env, tmp_path / "log.txt")
        ready = (lambda: True) if after == 0 else (lambda: checkpoint_path(killed, after).exists())
        if not kill_when(proc, ready, delay):
            break  # it finished first (a slow kill point on a fast machine)
        kills += 1
        # a killed run is never taken for a finished one: no model.pt without all epochs, no predictions
        assert not (killed / "predictions.csv").exists()
        if (killed / "model.pt").exists():
            assert load_checkpoint(killed / "model.pt")["epoch"] == EPOCHS
    assert kills >= 1, "the run finished before it could be killed"
    done = _train(config, env)
    assert done.returncode == 0, done.stderr

    # the final weights: same tensors, and the same bytes (torch.save is deterministic for equal objects)
    ref_model, new_model = load_checkpoint(reference / "model.pt"), load_checkpoint(killed / "model.pt")
    _assert_same_tensors(ref_model["model"], new_model["model"], "model.pt")
    assert _sha(reference / "model.pt") == _sha(killed / "model.pt")
    # the last checkpoint: weights, optimiser moments and scheduler agree exactly
    ref_ck, new_ck = (load_checkpoint(checkpoint_path(d, EPOCHS)) for d in (reference, killed))
    _assert_same_tensors(ref_ck["model"], new_ck["model"], "checkpoint model")
    for (k, s1), s2 in zip(ref_ck["optimizer"]["state"].items(), new_ck["optimizer"]["state"].values()):
        _assert_same_tensors(s1, s2, f"optimizer state {k}")
    assert ref_ck["scheduler"] == new_ck["scheduler"]
    # history: identical but for the wall time; held-out predictions identical
    h_ref, h_new = (pd.read_csv(d / "history.csv").drop(columns="seconds") for d in (reference, killed))
    pd.testing.assert_frame_equal(h_ref, h_new)
    assert _sha(reference / "predictions.csv") == _sha(killed / "predictions.csv")
    assert not list((killed / "checkpoints").glob("*.part")) and not list(killed.glob(".model.pt.*.part"))
