"""The small steps notebooks 05, 06 and 08 call, each on tiny inputs whose answer is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.explain import channels, embeddings, filters
from rxlib.models import build_model


def test_junk_note_prints_plain_ints():
    junk = np.array([False, True, False, True])
    assert embeddings.junk_note(junk) == "4 classes, of which 2 junk classes (no sample in any split): [1, 3]"


def test_template_and_feature_frames_per_model(tiny_model):
    junk = np.zeros(10, dtype=bool)
    junk[[2, 5]] = True
    frames = embeddings.template_tsne_frames({"a": tiny_model, "b": tiny_model}, "arc", junk, seed=0)
    assert list(frames) == ["a", "b"] and frames["a"]["junk"].tolist() == junk.tolist()
    pd.testing.assert_frame_equal(frames["a"], frames["b"])  # the same model and seed: the same picture
    x = np.random.default_rng(0).normal(size=(12, 8))
    y = np.repeat([0, 1, 2], 4)
    found = embeddings.feature_tsne_frames({"a": (x, y)}, seed=0)
    assert found["a"].shape == (12, 3) and found["a"]["label"].tolist() == y.tolist()


def test_features_by_model_keeps_the_names(monkeypatch):
    calls = []
    monkeypatch.setattr(embeddings, "features_of", lambda m, d, c, device=None: calls.append((m, device)) or (m, c))
    found = embeddings.features_by_model({"a": 1, "b": 2}, None, [3], device="cpu")
    assert found == {"a": (1, [3]), "b": (2, [3])} and calls == [(1, "cpu"), (2, "cpu")]


def test_figure10_layer_table_marks_substitutions(tiny_model):
    layers = filters.figure10_layers(tiny_model)
    table = filters.figure10_layer_table(layers, "tiny_densenet")
    assert table["paper"].tolist() == ["DB(1),DL(6)", "DB(2),DL(2)"]
    assert table["substituted"].tolist() == [layers[0] != (1, 6), layers[1] != (2, 2)]
    assert table["here"].iloc[1] == f"tiny_densenet DB({layers[1][0]}),DL({layers[1][1]})"


def test_initial_model_is_the_seeded_untrained_network():
    train = {"arch": "tiny_densenet", "n_classes": 5, "embedding_dim": 8, "seed": 3}
    a, b = filters.initial_model(train), filters.initial_model(train)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    other = filters.initial_model({**train, "seed": 4})
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), other.parameters()))
    table = filters.trained_vs_initial_table(a, b, filters.figure10_layers(a))
    assert list(table.columns) == list(filters.COMPARISON_COLUMNS)
    assert table["model"].tolist() == ["trained", "trained", "initialisation", "initialisation"]
    assert table.iloc[:2, 1:].reset_index(drop=True).equals(table.iloc[2:, 1:].reset_index(drop=True))


PLANTED = pd.DataFrame([[1.0, 0.2, 0.1], [0.1, 1.0, 0.3]], index=pd.Index([4, 7], name="class_id"), columns=["w1", "w2", "w3"])


def test_planted_importance_of_a_root(tmp_path):
    assert channels.planted_importance_of(tmp_path) is None
    (tmp_path / "truth").mkdir()
    pd.DataFrame({"class_id": [4, 7], "importance_w1": [1.0, 0.1], "importance_w2": [0.2, 1.0],
                  "importance_w3": [0.1, 0.3]}).to_csv(tmp_path / "truth" / "classes.csv", index=False)
    pd.testing.assert_frame_equal(channels.planted_importance_of(tmp_path), PLANTED)


def test_eq15_layers_and_figure12_series(tiny_model):
    layers = channels.eq15_layers(tiny_model, "denseblock2")
    assert layers == {"last dense layer": channels.last_dense_layer(tiny_model), "denseblock2": "denseblock2"}
    found = {"eq15_printed[L]": np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]]),
             "eq15_agreement[L]": np.array([[4.0, 2.0, 1.0]]), "occlusion_mean": np.array([[2.0, 1.0, 0.0]])}
    series = channels.figure12_series(found, PLANTED, 7)
    assert list(series) == ["eq. 15 printed", "eq. 15 agreement", "occlusion", "planted"]
    assert np.allclose(series["eq. 15 printed"], [0.25, 0.5, 1.0]) and np.allclose(series["occlusion"], [1.0, 0.5, 0.0])
    assert series["planted"].tolist() == [0.1, 1.0, 0.3]
    assert "planted" not in channels.figure12_series(found, None, 7)


def test_method_table_scored_or_not_and_the_best_method():
    labels = np.array([4, 4, 7, 7])
    good = PLANTED.loc[labels].to_numpy()
    dcmix = PLANTED.assign(val_balanced_accuracy=0.9)
    importances = channels.with_dcmix({"eq15_printed[L]": good, "flat": good[:, ::-1].copy()}, dcmix)
    assert list(importances) == ["eq15_printed[L]", "flat", "DCMIX (per class)"]
    assert "val_balanced_accuracy" not in importances["DCMIX (per class)"].columns
    scored = channels.method_table(importances, labels, PLANTED)
    assert list(scored.columns[:3]) == ["method", "n_classes", "chance_top1"] and (scored["chance_top1"] == 1 / 3).all()
    assert scored.set_index("method").loc["eq15_printed[L]", "top1_agreement"] == 1.0
    assert channels.best_method_note(scored, PLANTED).startswith("Best method by mean Spearman: eq15_printed[L] (+1.00")
    unscored = channels.method_table(importances, labels, None)
    assert "top1_agreement" not in unscored.columns and {"mean_w1", "top_w3"} <= set(unscored.columns)
    assert channels.best_method_note(unscored, None).startswith("no planted channels")
