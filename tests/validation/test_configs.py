"""Bad training configs and --set values: one line naming the key and value, exit 2, no traceback."""
from __future__ import annotations

import json

import pytest

from rxlib import cli

BAD_CONFIGS = {
    "epochs-float": ({"train": {"epochs": 1.5}}, "train.epochs: 1.5"),
    "train-null": ({"train": None}, "train must be an object"),
    "data-list": ({"data": [1]}, "data must be an object"),
    "batch-negative": ({"train": {"batch_size": -4}}, "batch_size must be >= 1, got -4"),
    "unknown-key": ({"train": {"epochz": 3}}, "unknown train settings ['epochz']"),
    "old-amp-key": ({"train": {"amp": True}}, "'amp' is now 'amp_dtype'"),
    "lr-string": ({"train": {"lr": "fast"}}, "train.lr: 'fast'"),
    "flag-string": ({"train": {"cutmix": "yes"}}, "train.cutmix: 'yes'"),
    "composite-c-range": ({"train": {"composite_c": 1.5}}, "composite_c must be in [0, 1]"),
    "storage-unknown": ({"data": {"storage": "disk"}}, "data.storage: 'disk'"),
    "normalize-unknown": ({"data": {"normalize": "foo"}}, "data.normalize: 'foo'"),
    "cue-string": ({"data": {"cue": "on"}}, "data.cue: 'on'"),
    "top-level-list": ([1, 2], "expected a JSON object at the top level"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line(case, tmp_path, capsys):
    raw, expected = BAD_CONFIGS[case]
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"profile": "smoke", **raw} if isinstance(raw, dict) else raw))
    code = cli.main(["train", "--config", str(config), "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert expected in err and str(config) in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("setting, expected", [
    ("data.storage=disk", "data.storage"), ("data.cue=true", "cannot be set"), ("train.epochs=1.5", "train.epochs"),
    ("budget.comparison_plates=x", "budget.comparison_plates"), ("nonsense=1", "unknown setting"),
])
def test_bad_set_value_is_one_line(setting, expected, tmp_path, capsys):
    code = cli.main(["reproduce", "--profile", "smoke", "--dry-run", "--data", str(tmp_path), "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
