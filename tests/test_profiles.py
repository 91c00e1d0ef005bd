"""Training profiles and JSON run configs: defaults, overrides, round trip, hashing, errors."""
from __future__ import annotations

import json

import pytest
import torch

from rxlib import profiles
from rxlib.profiles import (
    PROFILES,
    RunConfig,
    config_from_dict,
    load_config,
    run_config,
    save_config,
)
from rxlib.train import TrainConfig


def test_paper_profile_has_the_papers_settings():
    train = run_config("paper").train_config(n_classes=1139)
    assert train.arch == "densenet161" and train.loss == "composite"
    assert (train.composite_c, train.arc_scale, train.arc_margin) == (0.2, 30.0, 0.5)
    assert train.cutmix and train.cutmix_alpha == 1.0 and train.pseudo_label and train.cosine_schedule
    assert train.amp_dtype == "bfloat16" and train.channels_last and train.device == "cuda"


def test_smoke_profile_is_a_tiny_cpu_baseline():
    train = run_config("smoke").train_config(n_classes=23)
    assert train.arch == "tiny_densenet" and train.device == "cpu"
    assert not train.cutmix and not train.pseudo_label and train.loss == "composite"


def test_overrides_and_unknown_fields():
    assert run_config("smoke", loss="arc").train["loss"] == "arc"
    with pytest.raises(ValueError, match="unknown train settings"):
        run_config("smoke", lr_typo=1.0)
    with pytest.raises(ValueError, match="unknown training profile"):
        run_config("gpu-huge")
    with pytest.raises(ValueError, match="loss must be one of"):
        run_config("smoke", loss="hinge")


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_json_round_trip(profile, tmp_path):
    config = run_config(profile, epochs=3)
    config.data_root, config.out_dir = str(tmp_path / "d"), str(tmp_path / "o")
    loaded = load_config(save_config(config, tmp_path / "run.json"))
    assert loaded.to_dict() == config.to_dict()
    assert loaded.config_hash() == config.config_hash()


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "run.json"
    path.write_text(json.dumps({"profile": "smoke", "data_root": "../data", "train": {"epochs": 1}}))
    config = load_config(path)
    assert config.data_root == str((tmp_path / "data").resolve())
    assert config.train["epochs"] == 1 and config.train["arch"] == "tiny_densenet"


def test_bad_config_files_name_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_config(path)
    path.write_text(json.dumps({"profile": "smoke", "trian": {}}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.json")


def test_hash_ignores_device_and_workers_but_not_the_loss():
    base = run_config("smoke")
    assert base.with_overrides(device="cuda", num_workers=4).config_hash() == base.config_hash()
    assert base.with_overrides(loss="softmax").config_hash() != base.config_hash()
    # a default written out explicitly is the same run
    assert base.with_overrides(cutmix_alpha=TrainConfig().cutmix_alpha).config_hash() == base.config_hash()


def test_example_configs_load():
    from rxlib.config import PROJ_ROOT

    paths = sorted((PROJ_ROOT / "configs").glob("*.json"))
    assert paths
    for path in paths:
        load_config(path).train_config(n_classes=10)


def test_config_from_dict_rejects_non_objects():
    with pytest.raises(ValueError, match="JSON object"):
        config_from_dict([1, 2])
    assert isinstance(config_from_dict({}), RunConfig)


# --- runtime settings --------------------------------------------------------------------------


@pytest.fixture
def torch_threads():
    """Restore torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_thread_override(monkeypatch):
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "3")
    assert profiles.cpu_threads() == 3
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "zero")
    with pytest.raises(ValueError, match="RXLIB_TRAIN_THREADS"):
        profiles.cpu_threads()


def test_thread_count_is_one_whatever_the_machine_or_its_load(monkeypatch):
    monkeypatch.delenv("RXLIB_TRAIN_THREADS", raising=False)
    for load in (0.0, 50.0):
        monkeypatch.setattr("os.getloadavg", lambda load=load: (load, load, load))
        assert profiles.cpu_threads() == 1


def test_configure_threads_sets_torch(monkeypatch, torch_threads):
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "1")
    assert profiles.configure_threads() == 1
    assert torch.get_num_threads() == 1


def test_training_threads_on_the_cpu_only_and_restored(monkeypatch, torch_threads):
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "1")
    torch.set_num_threads(2)
    with profiles.training_threads("cpu") as threads:
        assert threads == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == 2
    with profiles.training_threads("cuda:1") as threads:  # a GPU run leaves torch's count alone
        assert threads == 2 == torch.get_num_threads()
    with pytest.raises(RuntimeError), profiles.training_threads("cpu"):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_device_check_names_the_device_and_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.device_problem("cpu") is None
    with pytest.raises(ValueError, match=r"'cuda:1' but no CUDA GPU.*--device cpu"):
        profiles.check_device("cuda:1", hint="--device cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    profiles.check_device("cuda")
