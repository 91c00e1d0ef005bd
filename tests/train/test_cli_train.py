"""``rxlib train --config FILE``: writes history, checkpoints and model, and resumes when killed."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from rxlib.cli import build_parser, main
from rxlib.train import latest_checkpoint
from rxlib.train.__main__ import build_parser as module_parser
from rxlib.train.__main__ import main as module_main


def _write_config(tmp_path, data_root, out_dir, epochs, tiny_run):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"profile": "smoke", "data_root": str(data_root), "out_dir": str(out_dir),
                                "train": {**tiny_run, "epochs": epochs}}))
    return path


def test_help_mentions_resume(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert "resumes from the last checkpoint" in " ".join(capsys.readouterr().out.split())


def test_train_writes_outputs_and_resumes(tiny_synth, tmp_path, registry_cache, monkeypatch, capsys, tiny_run):
    out = tmp_path / "run"
    # a run killed after epoch 1, simulated with the loop's stop_after_epoch
    from rxlib.train import run

    original = run.train
    monkeypatch.setattr(run, "train", lambda *a, **k: original(*a, **{**k, "stop_after_epoch": 1}))
    config = _write_config(tmp_path, tiny_synth, out, 3, tiny_run)
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    assert latest_checkpoint(out).name == "epoch_001.pt" and not (out / "model.pt").exists()
    monkeypatch.setattr(run, "train", original)
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert latest_checkpoint(out).name == "epoch_003.pt" and (out / "model.pt").is_file()
    accuracy = pd.read_csv(out / "accuracy.csv")
    assert "all" in set(accuracy["cell_type"])
    printed = capsys.readouterr().out
    assert f"outputs in {out}" in printed and "held-out accuracy" in printed and "trained in" in printed


def test_missing_data_root_is_an_error(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"profile": "smoke"}))
    assert main(["train", "--config", str(path)]) == 2
    assert "no data_root" in capsys.readouterr().err


def _options(parser) -> list[tuple]:
    return sorted((tuple(a.option_strings), a.required, a.default, a.help) for a in parser._actions)


def test_both_entry_points_declare_the_same_options():
    train = next(a for a in build_parser()._actions if getattr(a, "choices", None))._name_parser_map["train"]
    assert _options(train) == _options(module_parser())
    assert train.description == module_parser().description


@pytest.mark.parametrize("entry", ["rxlib", "module"])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, entry):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"profile": "smoke", "data_root": str(tmp_path / "nowhere")}))
    args = ["--config", str(path)]
    status = main(["train", *args]) if entry == "rxlib" else module_main(args)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1
    prog = "rxlib train" if entry == "rxlib" else "python -m rxlib.train"
    assert err.startswith(f"{prog}: error:") and "nowhere" in err
