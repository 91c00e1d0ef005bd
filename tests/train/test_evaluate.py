"""Held-out evaluation: per-cell-type accuracy, the control check, oscillation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.models import build_model
from rxlib.data.splits import held_out_split
from rxlib.train.evaluate import (
    accuracy_by_cell_type,
    back_and_forth,
    control_confidence,
    oscillation,
    chance_level,
    controls_table,
    correct_per_site,
    histories,
    loss_comparison_table,
    predictions_table,
)


def _predictions() -> pd.DataFrame:
    return pd.DataFrame({
        "cell_type": ["HEPG2", "HEPG2", "U2OS", "U2OS", "U2OS"],
        "well_type": ["treatment", "negative_control", "positive_control", "treatment", "treatment"],
        "label": [0, 9, 8, 1, 2],
        "pred_softmax": [0, 3, 8, 1, 0],
        "pred_arc": [0, 9, 8, 0, 0],
        "top1_prob": [0.9, 0.2, 0.8, 0.6, 0.5],
        "prob_true": [0.9, 0.1, 0.8, 0.6, 0.2],
    })


def test_accuracy_by_cell_type():
    table = accuracy_by_cell_type(_predictions()).set_index("cell_type")
    assert table.loc["HEPG2", "acc_softmax"] == 0.5 and table.loc["HEPG2", "acc_arc"] == 1.0
    assert table.loc["U2OS", "acc_softmax"] == pytest.approx(2 / 3)
    assert table.loc["all", "n"] == 5 and table.loc["all", "chance"] == pytest.approx(1 / 5)


def test_control_confidence():
    table = control_confidence(_predictions()).set_index("well_type")
    assert table.loc["negative_control", "mean_top1_prob"] == pytest.approx(0.2)
    assert table.loc["positive_control", "mean_top1_prob"] == pytest.approx(0.8)
    assert table.loc["treatment", "n"] == 3


def test_oscillation():
    history = pd.DataFrame({"a": [0.1, 0.3, 0.2, 0.4]})
    assert oscillation(history, "a") == pytest.approx(np.mean([0.2, 0.1, 0.2]))
    assert oscillation(history, "a", last=2) == pytest.approx(0.2)
    assert np.isnan(oscillation(history.iloc[:1], "a"))


def test_back_and_forth_ignores_steady_progress():
    steady = pd.DataFrame({"a": [0.1, 0.3, 0.6, 0.7]})
    assert back_and_forth(steady, "a") == pytest.approx(0.0)
    zigzag = pd.DataFrame({"a": [0.1, 0.3, 0.2, 0.4]})  # path 0.5, net 0.3, 3 steps
    assert back_and_forth(zigzag, "a") == pytest.approx(0.2 / 3)


def _trained(loss: str, acc, predictions: pd.DataFrame | None = None):
    from types import SimpleNamespace

    from rxlib.train.evaluate import accuracy_by_cell_type, control_confidence

    predictions = _predictions() if predictions is None else predictions
    history = pd.DataFrame({f"{part}_{kind}_{head}": acc for part in ("train", "val") for kind in ("acc", "loss")
                            for head in ("softmax", "arc")}).assign(val_loss=1.0, seconds=2.0)
    config = SimpleNamespace(train={"loss": loss, "seed": 0, "arch": "tiny", "cutmix": False, "pseudo_label": False,
                                    "epochs": len(acc)})
    return SimpleNamespace(config=config, history=history, predictions=predictions,
                           accuracy=accuracy_by_cell_type(predictions), controls=control_confidence(predictions))


def test_chance_histories_and_the_loss_table():
    runs = {"arc": _trained("arc", [0.1, 0.3, 0.2]), "composite": _trained("composite", [0.1, 0.2, 0.3])}
    assert chance_level(runs) == pytest.approx(1 / 5) == chance_level(runs["arc"]) == chance_level(runs, "composite")
    assert list(histories(runs)) == ["arc", "composite"] and histories(runs)["arc"] is runs["arc"].history
    table = loss_comparison_table(runs)
    assert table["run"].tolist() == ["arc", "composite"] and table["loss"].tolist() == ["arc", "composite"]
    assert {"osc_val_acc", "acc_softmax", "chance", "train_seconds"} <= set(table.columns)
    assert table.set_index("run").loc["arc", "osc_val_acc"] == pytest.approx(0.15)


def test_correct_per_site_and_the_controls_of_several_runs():
    pred = _predictions().assign(site_id=[f"s{i}" for i in range(5)], experiment=["A", "A", "B", "B", "B"])
    correct = correct_per_site(pred)
    assert correct["correct"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0] and correct.index.name == "site_id"
    assert correct_per_site(pred, "arc")["correct"].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert correct["experiment"].tolist() == ["A", "A", "B", "B", "B"]
    table = controls_table({"main": _trained("composite", [0.1, 0.2]), "twin": _trained("composite", [0.1, 0.2])})
    assert list(table.columns[:2]) == ["model", "well_type"] and table["model"].tolist() == ["main"] * 3 + ["twin"] * 3


def test_predictions_on_a_tiny_model(tiny_synth):
    split = held_out_split(tiny_synth, storage="memory")
    assert set(split.train.table["split"]) == {"train"} and set(split.val.table["split"]) == {"test"}
    assert not set(split.train.table["experiment"]) & set(split.val.table["experiment"])
    torch.manual_seed(0)
    model = build_model("tiny_densenet", int(split.table["label"].max()) + 1, embedding_dim=8, memory_efficient=False)
    before = split.val.raw_images(range(len(split.val)))
    predictions = predictions_table(model, split.val, batch_size=16)
    assert np.array_equal(before, split.val.raw_images(range(len(split.val))))  # inputs unchanged
    assert len(predictions) == len(split.val) and predictions["top1_prob"].between(0, 1).all()
    accuracy = accuracy_by_cell_type(predictions)
    assert set(accuracy["cell_type"]) == {"HEPG2", "U2OS", "all"}
    controls = control_confidence(predictions)
    assert {"negative_control", "positive_control"} <= set(controls["well_type"])


def test_experiment_normalisation_uses_each_experiments_own_statistics(tiny_synth):
    split = held_out_split(tiny_synth, augment=False)
    for dataset in (split.train, split.val):
        images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        for experiment in dataset.table["experiment"].unique():
            rows = (dataset.table["experiment"] == experiment).to_numpy()
            if dataset is split.train:  # the validation set is a subset of its experiments' sites
                assert images[torch.tensor(rows)].mean(dim=(0, 2, 3)).abs().max() < 1e-3
