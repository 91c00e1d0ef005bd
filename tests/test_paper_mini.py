"""The paper profile's code path on the CPU: all eight notebooks in the ``paper-mini`` profile.

``paper-mini`` is the paper profile with only its sizes shrunk (DenseNet-161, memory-efficient layers,
composite loss, CutMix, pseudo-labels, the site store read by DataLoader workers, channels-last), on
the ``paper-mini`` synthetic set (64x64: the smallest side at which every DenseNet-161 stage keeps a
spatial map) with one or two steps per model. It runs in CI so that the product's code path, not only
the smoke miniature, is exercised on every change.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from rxlib import config, manifest
from rxlib.reproduce import reproduce

pytestmark = pytest.mark.e2e  # minutes of DenseNet-161 on 2 cores: run by CI beside the suite (-m e2e)

NOTEBOOKS = sorted(p.stem for p in config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """A fresh model and data cache, inherited by the papermill kernels."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RXLIB_CACHE", str(cache))
    return cache


def test_all_notebooks_run_in_the_paper_mini_profile(fresh_cache, tmp_path):
    figures, reports = tmp_path / "figures", tmp_path / "reports"
    result = reproduce(profile="paper-mini", figures_dir=figures, reports_dir=reports, log=lambda *_: None)

    assert len(NOTEBOOKS) == 8
    for name in NOTEBOOKS:
        expected = manifest.expected_files(name, figures)
        assert expected, name
        missing = [p.name for p in expected if not (p.is_file() and p.stat().st_size > 0)]
        assert not missing, (name, missing)
        executed = (reports / f"{name}.ipynb").read_text()
        assert '"output_type": "error"' not in executed, name
    declared = {name for nb in NOTEBOOKS for name in (p.name for p in manifest.expected_files(nb, figures))}
    assert set(result["file"]) == declared
    written = pd.read_csv(reports / "manifest.csv")
    assert set(written["notebook"]) == set(NOTEBOOKS)
    assert (written["bytes"] > 0).all()
    log = pd.read_csv(reports / "run_log.csv")
    assert set(log.loc[log["status"] == "ok", "notebook"]) == set(NOTEBOOKS)
    # the synthetic set of the profile was generated into the fresh cache, at 64x64
    data = config.synthetic_root("paper-mini", 0)
    assert str(data).startswith(str(fresh_cache)) and (data / "metadata.csv").is_file()
    # the models were the paper's network: every registered model is a DenseNet-161 or the ResNet-50
    runs = [p for p in (fresh_cache / "models").glob("*/run.json")]
    assert runs
    archs = {pd.read_json(p, typ="series")["config"]["train"]["arch"] for p in runs}
    assert archs <= {"densenet161", "resnet50"} and "densenet161" in archs
    assert os.environ["RXLIB_CACHE"] == str(fresh_cache)
