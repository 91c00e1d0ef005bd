"""Helpers the explanation notebooks call: template and feature tables, the Figure 10
and Figure 12 layers, importances over a set, the new figures, the cached tables and the cheating config."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.explain import (
    feature_separation_table,
    figure10_layers,
    figure10_weights,
    importance_methods,
    last_dense_layer,
    most_frequent_classes,
    template_table,
)
from rxlib.plotting.explain import plot_cam_grid, plot_grad_camo


def test_most_frequent_classes_breaks_ties_by_id():
    assert most_frequent_classes([5, 5, 3, 3, 1, 2, 2, 2], 3) == [2, 3, 5]


def test_template_table_rows_per_model_and_head(tiny_model):
    junk = np.zeros(10, dtype=bool)
    junk[[3, 7]] = True
    table = template_table({"a": tiny_model, "b": tiny_model}, junk)
    assert table[["model", "head"]].values.tolist() == [["a", "arc"], ["a", "softmax"], ["b", "arc"], ["b", "softmax"]]
    assert table["spread_actual"].between(0, 2).all() and (table["n_junk"] == 2).all()
    with pytest.raises(ValueError, match="junk flags"):
        template_table({"a": tiny_model}, junk[:5])


def test_feature_separation_table():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (5, 4)) + [1, 0, 0, 0], rng.normal(0, 0.1, (5, 4)) + [0, 1, 0, 0]])
    y = np.repeat([0, 1], 5)
    table = feature_separation_table({"m": (x, y)})
    assert table.loc[0, "feature_separation"] > 0.5 and table.loc[0, "n_sites"] == 10


def test_figure10_layers_clip_to_the_model(tiny_model):
    assert figure10_layers(tiny_model) == [(1, 2), (2, 2)]  # tiny DenseNet blocks have 2 and 4 layers
    assert set(figure10_weights(tiny_model, figure10_layers(tiny_model))) == {"DB(1),DL(2)", "DB(2),DL(2)"}
    with pytest.raises(ValueError, match="denseblock9"):
        figure10_layers(tiny_model, [(9, 1)])


def test_last_dense_layer(tiny_model):
    assert last_dense_layer(tiny_model) == "denseblock4.denselayer4"
    with pytest.raises(ValueError, match="dense blocks"):
        last_dense_layer(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))


def test_importance_methods_over_batches(tiny_model, batch):
    images, cell_type = batch
    before = images.clone()
    found = importance_methods(tiny_model, images, cell_type, [0, 1, 2], cam_layers={"L": "denseblock2"}, batch_size=2)
    assert set(found) == {"eq15_printed[L]", "eq15_printed_rescaled[L]", "eq15_agreement[L]", "eq15_agreement_rescaled[L]",
                          "occlusion_mean", "grad_x_input"}
    assert all(v.shape == (3, 6) for v in found.values())
    assert torch.equal(images, before)
    with pytest.raises(ValueError, match="labels"):
        importance_methods(tiny_model, images, cell_type, [0], cam_layers={})


def test_cam_grid_and_grad_camo_plots():
    rng = np.random.default_rng(0)
    fig = plot_cam_grid(rng.random((2, 6, 16, 16)), torch.rand(2, 16, 16), titles=["a", "b"], channel=5)
    assert len(fig.axes) == 7  # 2 x 3 panels and a colour bar
    plt.close(fig)
    with pytest.raises(ValueError, match="same non-zero number"):
        plot_cam_grid(rng.random((2, 6, 16, 16)), torch.rand(1, 16, 16))
    summary = pd.DataFrame({"model": ["a", "a", "b", "b"], "cell_type": ["X", "Y", "X", "Y"],
                            "grad_camo": [0.8, 0.7, 0.6, 0.5], "cell_fraction": [0.5, 0.5, 0.5, 0.5]})
    plt.close(plot_grad_camo(summary, hue="model"))


def test_cached_table_computes_once(tmp_path, monkeypatch):
    from rxlib.train.registry import cached_table

    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    (root / "metadata.csv").write_text("site_id\n")
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"w1": [0.25, 0.75]}, index=pd.Index([3, 4], name="class_id"))

    first = cached_table("demo", {"steps": 1}, root, compute)
    again = cached_table("demo", {"steps": 1}, root, compute)
    assert len(calls) == 1 and again.index.name == "class_id" and again.loc[4, "w1"] == 0.75
    cached_table("demo", {"steps": 2}, root, compute)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ValueError, match="invalid cache name"):
        cached_table("../x", {}, root, compute)


def test_cheating_run_config():
    from rxlib.profiles import CHEATING_OVERRIDES, cheating_run_config, run_config

    config = cheating_run_config("smoke")
    assert config.data["augment"] is False
    assert config.train["epochs"] == CHEATING_OVERRIDES["smoke"]["epochs"]
    assert config.config_hash() != run_config("smoke").config_hash()
