from __future__ import annotations

import numpy as np
import pytest
import torch

from rxlib.explain.gradcamo import (
    grad_camo_image,
    grad_camo_per_cell,
    grad_camo_score,
    grad_camo_set,
    segment_cells,
    segmentation_scores,
    truth_mask_paths,
)


def two_cells() -> np.ndarray:
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[1:3, 1:3] = 1  # 4 px
    labels[4:8, 4:8] = 2  # 16 px
    return labels


def test_attention_all_on_one_cell():
    labels = two_cells()
    cam = np.zeros((8, 8))
    cam[1:3, 1:3] = 0.5
    assert grad_camo_score(cam, labels == 1) == 1.0
    per_cell = grad_camo_per_cell(torch.from_numpy(cam), labels).set_index("cell")
    assert per_cell.loc[1, "grad_camo"] == 1.0 and per_cell.loc[2, "grad_camo"] == 0.0
    assert per_cell.loc[2, "area_fraction"] == 16 / 64


def test_uniform_attention_gets_the_area_fraction():
    labels = two_cells()
    result = grad_camo_image(np.ones((8, 8)), labels)
    assert result["grad_camo"] == pytest.approx(20 / 64) and result["background"] == pytest.approx(44 / 64)
    assert result["enrichment"] == pytest.approx(1.0) and result["n_cells"] == 2
    assert result["mean_per_cell"] == pytest.approx(10 / 64)


def test_set_average_and_errors():
    labels = two_cells()
    frame = grad_camo_set(np.stack([np.ones((8, 8)), (labels > 0).astype(float)]), [labels, labels], keys=["a", "b"])
    assert list(frame["key"]) == ["a", "b"]
    assert frame["grad_camo"].mean() == pytest.approx((20 / 64 + 1.0) / 2)
    with pytest.raises(ValueError, match="upsample"):
        grad_camo_score(np.ones((4, 4)), labels > 0)
    with pytest.raises(ValueError, match="negative"):
        grad_camo_score(-np.ones((8, 8)), labels > 0)
    assert np.isnan(grad_camo_score(np.zeros((8, 8)), labels > 0))


def test_segmentation_scores_on_hand_made_masks():
    truth = two_cells()
    assert segmentation_scores(truth, truth)["dice"] == 1.0
    predicted = truth.copy()
    predicted[predicted == 1] = 0  # one cell missed
    scores = segmentation_scores(predicted, truth)
    assert scores["dice"] == pytest.approx(2 * 16 / (16 + 20)) and scores["iou"] == pytest.approx(16 / 20)
    assert scores["n_matched"] == 1 and scores["recall"] == 0.5 and scores["precision"] == 1.0
    with pytest.raises(ValueError, match="shape"):
        segmentation_scores(predicted[:4], truth)


def test_segment_cells_finds_bright_blobs():
    image = np.zeros((6, 32, 32), dtype=np.float32)
    image[0, 5:10, 5:10] = 1.0
    image[0, 20:26, 20:26] = 1.0
    image[1:, 3:12, 3:12] = 1.0
    image[1:, 18:28, 18:28] = 1.0
    cells = segment_cells(image, max_distance=5)
    assert cells.max() == 2 and (cells > 0).sum() > 50
    with pytest.raises(ValueError, match="out of range"):
        segment_cells(image[:3])


def test_truth_mask_paths_follow_the_synthetic_layout(tmp_path):
    paths = truth_mask_paths(tmp_path, "HEPG2-01", 1, "B02", 2)
    assert paths["cells"] == tmp_path / "truth" / "masks" / "HEPG2-01" / "Plate1" / "B02_s2_cells.png"
    from rxlib.explain.gradcamo import load_truth_masks
    with pytest.raises(FileNotFoundError, match="B02_s2_cells.png"):
        load_truth_masks(tmp_path, "HEPG2-01", 1, "B02", 2)
