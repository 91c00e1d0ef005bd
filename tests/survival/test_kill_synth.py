"""``rxlib synth`` killed with SIGKILL halfway and run again writes the same bytes as a run never
interrupted, and a killed run never looks finished (metadata.csv is written last)."""
from __future__ import annotations

import subprocess
import sys

from killing import child_env, folder_digest, kill_when, start

OVERRIDES = {"image_size": 48, "n_treatments": 6, "n_junk": 1, "n_positive_controls": 1,
             "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 1)), "n_plates": 1, "n_sites": 2, "calibration_sites": 2}


def _generate_args(out, workers: int) -> list[str]:
    code = ("import sys; from rxlib.synth import generate; "
            f"generate(sys.argv[1], profile='smoke', seed=3, workers={workers}, progress=False, **{OVERRIDES!r})")
    return ["-c", code, str(out)]


def test_killed_synth_resumes_to_the_same_bytes(tmp_path, kill_rng):
    env = child_env(tmp_path)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = subprocess.run([sys.executable, *_generate_args(reference, 1)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    n_png = sum(1 for _ in (reference / "images").rglob("*.png"))

    kills = 0
    images = killed / "images"
    count = lambda: sum(1 for _ in images.rglob("*.png")) if images.is_dir() else 0  # noqa: E731
    for workers in (1, 2):  # one kill of the serial path, one of the worker pool
        existing = count()
        if existing >= n_png - 1:
            break
        target = kill_rng.randrange(existing + 1, n_png)
        proc = start(_generate_args(killed, workers), env, tmp_path / "log.txt")
        if not kill_when(proc, lambda: count() >= target, kill_rng.uniform(0.0, 0.1)):
            break
        kills += 1
        if (killed / "metadata.csv").exists():  # killed while exiting: then it must really be complete
            assert folder_digest(killed) == folder_digest(reference)
            break
    assert kills >= 1, "synth finished before it could be killed"

    done = subprocess.run([sys.executable, *_generate_args(killed, 1)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert folder_digest(killed) == folder_digest(reference)  # every file, same bytes; no stray temporaries
