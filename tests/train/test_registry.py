"""The trained-model registry: a second call with the same config loads instead of training."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from rxlib.profiles import run_config
from rxlib.train import registry, run


@pytest.fixture
def counted_train(monkeypatch):
    calls = []
    original = run.train

    def counting(*args, **kwargs):
        calls.append(kwargs.get("out_dir"))
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "train", counting)
    return calls


def test_second_call_loads_from_the_registry(tiny_synth, registry_cache, counted_train, tiny_run):
    config = run_config("smoke", **tiny_run)
    first = registry.train_or_load(config, tiny_synth)
    assert first.trained_now and len(counted_train) == 1
    assert first.folder.parent == registry_cache / "models"
    for name in ("run.json", "history.csv", "model.pt", "predictions.csv", "accuracy.csv", "controls.csv"):
        assert (first.folder / name).is_file(), name
    second = registry.train_or_load(run_config("smoke", **tiny_run), tiny_synth)
    assert not second.trained_now and len(counted_train) == 1
    assert second.folder == first.folder
    sa, sb = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    pd.testing.assert_frame_equal(first.accuracy, second.accuracy)
    assert set(second.accuracy["cell_type"]) == {"HEPG2", "U2OS", "all"}
    table = registry.registry_table()
    assert table["complete"].all() and len(table) == 1


def test_a_different_config_trains_again(tiny_synth, registry_cache, counted_train, tiny_run):
    registry.train_or_load(run_config("smoke", **tiny_run), tiny_synth)
    other = registry.train_or_load(run_config("smoke", **tiny_run, loss="softmax"), tiny_synth)
    assert other.trained_now and len(counted_train) == 2
    assert registry.find_model(run_config("smoke", **tiny_run, loss="arc"), tiny_synth) is None


def test_a_model_without_curves_reuses_the_same_run_with_them(tiny_synth, registry_cache, counted_train, tiny_run):
    """The weights do not depend on the held-out pass after each epoch: a registered run that made it serves a
    request without it (a main model trained before validate_each_epoch existed is not trained again)."""
    validated = registry.train_or_load(run_config("smoke", **tiny_run), tiny_synth)
    quiet = registry.train_or_load(run_config("smoke", **tiny_run, validate_each_epoch=False), tiny_synth)
    assert len(counted_train) == 1 and not quiet.trained_now and quiet.folder == validated.folder
    # the other way round there is no such reuse: a request for the curves trains the run that makes them
    registry.train_or_load(run_config("smoke", **tiny_run, loss="softmax", validate_each_epoch=False), tiny_synth)
    curves = registry.train_or_load(run_config("smoke", **tiny_run, loss="softmax"), tiny_synth)
    assert len(counted_train) == 3 and curves.trained_now and curves.history["val_loss"].notna().all()


def test_pseudo_labels_and_cutmix_run(tiny_synth, registry_cache, tiny_run):
    result = registry.train_or_load(run_config("smoke", **tiny_run, cutmix=True, pseudo_label=True), tiny_synth)
    assert result.history["alpha"].iloc[-1] > 0 and len(result.history) == 2


def test_models_of_and_provenance_table(tmp_path):
    from types import SimpleNamespace

    runs = {"a": SimpleNamespace(model="net-a", trained_now=True, folder=tmp_path / "key-a"),
            "b": SimpleNamespace(model="net-b", trained_now=False, folder=tmp_path / "key-b")}
    assert registry.models_of(runs) == {"a": "net-a", "b": "net-b"}
    table = registry.provenance_table(runs)
    assert table.values.tolist() == [["a", "trained now", "key-a"], ["b", "loaded from the registry", "key-b"]]
    assert list(registry.provenance_table({}).columns) == ["run", "source", "folder"]
