"""Data-root resolution: the folder given, RXLIB_DATA, or the profile's synthetic set generated once;
and the optional real RxRx1 pieces."""
from __future__ import annotations

import sys
import types

import pytest

from rxlib import config
from rxlib.data.roots import resolve_data_root, resolve_real_root, synthetic_profile


def test_synthetic_data_generated_once(tmp_path, monkeypatch):
    monkeypatch.delenv("RXLIB_DATA", raising=False)
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path))
    calls = []

    def generate(out, profile="smoke", seed=0, **kwargs):
        calls.append((out, profile, seed))
        out.mkdir(parents=True)
        (out / "metadata.csv").write_text("site_id\n")

    monkeypatch.setitem(sys.modules, "rxlib.synth", types.SimpleNamespace(generate=generate))
    expected = config.synthetic_root("smoke", 2)
    assert resolve_data_root("smoke", 2, log=lambda line: None) == expected
    assert resolve_data_root("smoke", 2, log=lambda line: None) == expected
    assert calls == [(expected, "smoke", 2)]
    with pytest.raises(ValueError, match="rxrx1.*data_root"):
        resolve_data_root("rxrx1", 0)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_data_root("smoke", 0, tmp_path / "nowhere")
    monkeypatch.setenv("RXLIB_DATA", str(tmp_path))
    assert resolve_data_root("rxrx1", 0) == tmp_path.resolve()


def test_dry_run_names_the_synthetic_set_without_generating(tmp_path, monkeypatch):
    monkeypatch.delenv("RXLIB_DATA", raising=False)
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "rxlib.synth", None)  # importing the generator would fail
    lines = []
    root = resolve_data_root("paper-mini", 3, dry_run=True, log=lines.append)
    assert root == config.synthetic_root(synthetic_profile("paper-mini"), 3) and not root.exists()
    assert lines == [f"would generate the synthetic data set (profile='paper-mini', seed=3) in {root}"]


def test_real_root_only_where_its_train_csv_is(tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_SHARED", str(tmp_path / "shared"))
    assert resolve_real_root() is None and resolve_real_root(tmp_path) is None
    (tmp_path / "train.csv").write_text("id_code\n")
    assert resolve_real_root(tmp_path) == tmp_path
    default = tmp_path / "shared" / "kaggle-2023"
    default.mkdir(parents=True)
    (default / "train.csv").write_text("id_code\n")
    assert resolve_real_root() == default.resolve()
