"""Localisation metrics on hand-made maps whose scores are known exactly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.explain.gradcamo import grad_camo_score
from rxlib.explain.localisation import (
    localisation_summary,
    localisation_table,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)

MASK = np.zeros((4, 4), bool)
MASK[:2, :2] = True  # 4 pixels of 16


def test_pointing_game_hits_misses_ties_and_empty_masks():
    inside = np.zeros((4, 4)); inside[1, 1] = 5.0
    outside = np.zeros((4, 4)); outside[3, 3] = 5.0
    tied = np.zeros((4, 4)); tied[0, 0] = tied[3, 3] = 5.0  # one of the tied maxima inside: a hit
    result = pointing_game(np.stack([inside, outside, tied]), np.stack([MASK] * 3))
    np.testing.assert_array_equal(result, [1.0, 0.0, 1.0])
    assert np.isnan(pointing_game(inside, np.zeros((4, 4), bool))[0])
    assert pointing_game(torch.from_numpy(inside), MASK.astype(np.uint16) * 7)[0] == 1.0  # torch map, label mask


def test_relevance_mass_accuracy_exact():
    a = np.zeros((4, 4)); a[0, 0] = 3.0; a[3, 3] = 1.0; a[2, 2] = -5.0  # negative relevance ignored
    assert relevance_mass_accuracy(a, MASK)[0] == pytest.approx(0.75)
    uniform = np.ones((4, 4))
    assert relevance_mass_accuracy(uniform, MASK)[0] == pytest.approx(0.25)  # chance = mask fraction
    assert np.isnan(relevance_mass_accuracy(np.zeros((4, 4)), MASK)[0])  # no positive relevance
    cam = np.random.default_rng(0).random((4, 4))
    assert relevance_mass_accuracy(cam, MASK)[0] == pytest.approx(grad_camo_score(cam, MASK))  # Grad-CAMO for CAMs


def test_relevance_rank_accuracy_exact():
    a = np.arange(16, dtype=float)[::-1].reshape(4, 4)  # ranks row-major: pixels 0,1,2,3 are the top 4
    # top-4 pixels: (0,0), (0,1), (0,2), (0,3); inside the mask: (0,0), (0,1) -> 2 / 4
    assert relevance_rank_accuracy(a, MASK)[0] == pytest.approx(0.5)
    perfect = np.where(MASK, 1.0 + np.arange(16).reshape(4, 4), 0.0)
    assert relevance_rank_accuracy(perfect, MASK)[0] == 1.0
    assert relevance_rank_accuracy(1.0 - MASK, MASK)[0] == 0.0
    assert np.isnan(relevance_rank_accuracy(a, np.zeros((4, 4)))[0])


def test_table_summary_and_errors():
    maps = np.stack([np.where(MASK, 2.0, 1.0), np.where(MASK, 0.0, 1.0)])
    table = localisation_table(maps, [MASK, MASK], keys=["a", "b"])
    assert table["key"].tolist() == ["a", "b"]
    np.testing.assert_allclose(table["pointing_game"], [1.0, 0.0])
    np.testing.assert_allclose(table["relevance_mass_accuracy"], [8 / 20, 0.0])
    np.testing.assert_allclose(table["relevance_rank_accuracy"], [1.0, 0.0])
    np.testing.assert_allclose(table["mask_fraction"], [0.25, 0.25])
    summary = localisation_summary(table.assign(cell_type=["x", "y"]), by="cell_type")
    assert summary["n"].tolist() == [1, 1] and summary["pointing_game"].tolist() == [1.0, 0.0]
    assert localisation_summary(table).loc[0, "relevance_rank_accuracy"] == 0.5
    with pytest.raises(ValueError, match="upsample"):
        pointing_game(np.zeros((2, 2)), MASK)
    with pytest.raises(ValueError, match="keys"):
        localisation_table(maps, [MASK, MASK], keys=["a"])
    with pytest.raises(ValueError, match="non-finite"):
        relevance_mass_accuracy(np.full((4, 4), np.nan), MASK)
    assert isinstance(table, pd.DataFrame)


def test_agrees_with_quantus_where_installed():
    """Quantus 0.6.0's relevance mass and rank accuracy on precomputed maps (its PointingGame fails under numpy 2)."""
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    a, s = rng.random((6, 1, 12, 12)), (rng.random((6, 1, 12, 12)) > 0.7).astype(float)
    x, y = rng.random((6, 1, 12, 12)), np.zeros(6, int)
    for name, ours in (("RelevanceMassAccuracy", relevance_mass_accuracy), ("RelevanceRankAccuracy", relevance_rank_accuracy)):
        theirs = getattr(quantus, name)(normalise=False, disable_warnings=True)(model=None, x_batch=x, y_batch=y,
                                                                                a_batch=a, s_batch=s)
        np.testing.assert_allclose(np.asarray(theirs, float), ours(a[:, 0], s[:, 0]))


@pytest.fixture(scope="module")
def tiny_truth(tmp_path_factory):
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("loc") / "data", profile="smoke", seed=0, progress=False, image_size=32,
                    n_treatments=4, n_junk=0, n_positive_controls=1, experiments=(("HEPG2", 1, 1), ("U2OS", 1, 1)),
                    n_plates=1, n_sites=1, calibration_sites=2)


def test_gradcam_localisation_scores_each_site_against_both_planted_masks(tiny_truth):
    from rxlib.data.splits import split_sites
    from rxlib.explain.cam import grad_cam
    from rxlib.explain.gradcamo import load_truth_masks
    from rxlib.explain.localisation import MASK_KINDS, gradcam_localisation
    from rxlib.explain.sites import site_batch
    from rxlib.models import build_model

    torch.manual_seed(0)
    sites = split_sites(tiny_truth, "validation")
    model = build_model("tiny_densenet", int(sites.table["label"].max()) + 1, embedding_dim=16).eval()
    positions = list(range(min(6, len(sites))))
    frame = gradcam_localisation(model, sites, tiny_truth, positions, layer="denseblock2", batch_size=4)
    assert len(frame) == len(MASK_KINDS) * len(positions) and set(frame["mask"]) == set(MASK_KINDS)
    batch = site_batch(sites, positions)
    maps = grad_cam(model, batch["image"], batch["cell_type"], batch["label"].tolist(), layer="denseblock2",
                    upsample=True).numpy()
    row = sites.table.iloc[positions[0]]
    cells = load_truth_masks(tiny_truth, row["experiment"], int(row["plate"]), row["well"], int(row["site"]))["cells"] > 0
    expected = localisation_table(maps[:1], cells[None])
    got = frame[(frame["mask"] == "cells")].iloc[0]
    assert got["site_id"] == row["site_id"] and got["mask_fraction"] == pytest.approx(cells.mean())
    assert got["relevance_mass_accuracy"] == pytest.approx(expected["relevance_mass_accuracy"].iloc[0])
    assert set(frame["source"]) == {"truth"}
    segmented = gradcam_localisation(model, sites, tiny_truth, positions, layer="denseblock2", masks="segmentation")
    assert set(segmented["mask"]) == {"cells"} and set(segmented["source"]) == {"segmentation"}
    assert len(segmented) == len(positions)


def test_localisation_verdicts_compare_each_metric_with_its_chance_level():
    from rxlib.explain.verdicts import localisation_verdicts

    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({"mask": ["cells"] * n + ["phenotype"] * n, "mask_fraction": 0.3,
                          "pointing_game": np.r_[np.ones(n), np.zeros(n)],
                          "relevance_mass_accuracy": np.r_[0.6 + rng.normal(0, 0.02, n), 0.3 + rng.normal(0, 0.02, n)],
                          "relevance_rank_accuracy": np.r_[0.5 + rng.normal(0, 0.02, n), [np.nan] * n]})
    verdicts = {v.claim: v for v in localisation_verdicts(frame, n_resamples=999)}
    assert verdicts["localisation-cells-pointing-game"].holds is True
    assert verdicts["localisation-phenotype-pointing-game"].holds is False
    assert verdicts["localisation-cells-relevance-mass-accuracy"].holds is True
    assert verdicts["localisation-phenotype-relevance-mass-accuracy"].holds is None  # at chance: undecided
    assert "localisation-phenotype-relevance-rank-accuracy" not in verdicts  # no site with that mask
    assert verdicts["localisation-phenotype-pointing-game"].source == "paper"
