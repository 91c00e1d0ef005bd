"""The spurious cue drawn on the fly (rxlib.data.cue) and the held-out split of the Kaggle layout."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rxlib.data.cue import SpuriousCue
from rxlib.data.splits import held_out_split, part_mask, split_sites, validation_experiments


def _site(size: int = 32) -> np.ndarray:
    site = np.full((6, size, size), 10, dtype=np.uint8)
    site[:, 8:24, 8:24] = 200  # one bright cell in every channel
    return site


def test_cue_lands_in_the_background_of_its_channel_only():
    cue = SpuriousCue((3, 7), amplitude=20.0)
    raw = _site()
    out = cue.apply(raw, 7)
    assert out.dtype == np.uint8 and out.shape == raw.shape
    assert np.array_equal(out[:5], raw[:5]) and np.array_equal(out[5, 8:24, 8:24], raw[5, 8:24, 8:24])
    background = np.ones((32, 32), bool)
    background[8:24, 8:24] = False
    added = out[5].astype(int) - raw[5].astype(int)
    assert added[background].max() == 20 and added[background].min() == 0
    assert np.array_equal(raw, _site())  # the input is not changed in place


def test_cue_codes_the_class_and_skips_unknown_classes():
    cue = SpuriousCue.for_labels([7, 3, -1, 3])
    assert cue.classes == (3, 7)
    raw = _site()
    assert not np.array_equal(cue.apply(raw, 3), cue.apply(raw, 7))
    assert np.array_equal(cue.apply(raw, 5), raw)
    with pytest.raises(ValueError, match="uint8"):
        cue.apply(raw.astype(np.float32), 3)
    with pytest.raises(ValueError, match="at least one class"):
        SpuriousCue.for_labels([-1])


def _kaggle_like(test_treatments_labelled: bool) -> pd.DataFrame:
    rows = []
    for experiment in ("HEPG2-01", "HEPG2-02", "U2OS-01", "HEPG2-08"):
        split = "test" if experiment == "HEPG2-08" else "train"
        for well_type, label in (("treatment", 5), ("negative_control", 1138)):
            known = split == "train" or well_type != "treatment" or test_treatments_labelled
            rows.append({"experiment": experiment, "cell_type": experiment.split("-")[0], "split": split,
                         "well_type": well_type, "label": label if known else -1})
    return pd.DataFrame(rows)


def test_kaggle_layout_holds_out_training_experiments_for_treatment_accuracy():
    table = _kaggle_like(test_treatments_labelled=False)
    assert validation_experiments(table) == ["HEPG2-02"]  # U2OS has a single training experiment
    assert table.loc[part_mask(table, "train"), "experiment"].unique().tolist() == ["HEPG2-01", "U2OS-01"]
    held = table.loc[part_mask(table, "validation")]
    assert set(held["experiment"]) == {"HEPG2-02", "HEPG2-08"}
    assert ((held["well_type"] == "treatment") & (held["label"] >= 0)).any()


def test_labelled_test_treatments_keep_the_plain_split():
    table = _kaggle_like(test_treatments_labelled=True)
    assert validation_experiments(table) == []
    assert np.array_equal(part_mask(table, "validation"), part_mask(table, "test"))
    with pytest.raises(ValueError, match="split must be one of"):
        part_mask(table, "val")


def test_held_out_split_draws_the_cue_into_training_items_only(tiny_root):
    clean, cued = held_out_split(tiny_root, augment=False), held_out_split(tiny_root, augment=False, cue=True)
    assert cued.train.cue is not None and cued.val.cue is None and cued.unlabelled.cue is None
    assert cued.train.cue.classes == tuple(sorted(clean.train.table["label"].unique()))
    assert np.array_equal(split_sites(tiny_root, "validation").raw_images([0]), cued.val.raw_images([0]))
