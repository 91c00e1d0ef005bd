"""Sites in memory, Grad-CAMO over a data set, the cheating-model measurements and per-class DCMIX,
on a tiny synthetic data set (32x32), with the spurious cue drawn on the fly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.explain import cheating
from rxlib.explain.dcmix import (
    SmallConvNet,
    class_sample,
    dcmix_per_class,
    dcmix_per_class_streaming,
    normalised_images,
    train_dcmix_binary,
)
from rxlib.explain.gradcamo import grad_camo_dataset, grad_camo_summary
from rxlib.explain.sites import (
    example_titles,
    best_recognised_group,
    pick_examples,
    sample_positions,
    site_batch,
)
from rxlib.data.splits import held_out_split, split_sites
from rxlib.models import build_model

TINY = {"image_size": 32, "n_treatments": 6, "n_junk": 1, "n_positive_controls": 1,
        "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 1)), "n_plates": 1, "n_sites": 1, "calibration_sites": 2}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("explain_synth") / "data", profile="smoke", seed=0, progress=False, **TINY)


@pytest.fixture(scope="module")
def untrained(tiny_root):
    torch.manual_seed(0)
    from rxlib.data import class_scheme

    return build_model("tiny_densenet", class_scheme(tiny_root).n_classes, embedding_dim=16).eval()


def test_split_sites_equal_the_held_out_split(tiny_root):
    split = held_out_split(tiny_root, augment=False)
    sites = split_sites(tiny_root, "test")
    assert sites.table["site_id"].tolist() == split.val.table["site_id"].tolist()
    for i in range(len(sites)):
        assert torch.equal(sites[i]["image"], split.val[i]["image"])
    assert split_sites(tiny_root, "test") is sites  # cached per process
    with pytest.raises(ValueError, match="split"):
        split_sites(tiny_root, "val")


def test_subset_batch_and_sampling(tiny_root):
    sites = split_sites(tiny_root, "train")
    part = sites.subset([2, 0])
    assert part.table["site_id"].tolist() == sites.table["site_id"].iloc[[2, 0]].tolist()
    assert torch.equal(part[0]["image"], sites[2]["image"])
    batch = site_batch(sites, [0, 1, 2])
    assert batch["image"].shape == (3, 6, 32, 32) and batch["cell_type"].shape == (3, 4) and batch["label"].shape == (3,)
    chosen = sample_positions(sites.table, 4, seed=1)
    assert len(chosen) == 4 and set(sites.table["cell_type"].iloc[chosen]) == set(sites.table["cell_type"])
    assert np.array_equal(chosen, sample_positions(sites.table, 4, seed=1))
    assert len(sample_positions(sites.table, 10_000)) == len(sites)
    with pytest.raises(IndexError):
        sites.subset([len(sites)])


def test_pick_examples_and_best_group():
    predictions = pd.DataFrame({
        "cell_type": ["A", "A", "B", "B", "B"], "well_type": ["treatment"] * 4 + ["negative_control"],
        "label": [1, 2, 1, 3, 9], "pred_softmax": [1, 0, 0, 3, 9], "top1_prob": [0.6, 0.9, 0.95, 0.5, 1.0],
        "prob_true": [0.6, 0.1, 0.01, 0.5, 1.0]})
    examples = pick_examples(predictions)
    assert examples["position"].tolist() == [0, 3]  # correct beats more confident but wrong
    group = best_recognised_group(predictions)
    assert (group["cell_type"], group["label"]) == ("A", 1) and group["positions"].tolist() == [0]


def test_grad_camo_dataset_scores_against_the_truth(untrained, tiny_root):
    sites = split_sites(tiny_root, "test")
    frame = grad_camo_dataset(untrained, sites, tiny_root, [0, 1], layer="denseblock2")
    assert len(frame) == 2 and frame["grad_camo"].between(0, 1).all()
    assert (frame["cell_fraction"] > 0).all() and set(frame["layer"]) == {"denseblock2"}
    summary = grad_camo_summary(frame)
    assert summary["cell_type"].iloc[-1] == "all" and summary["n"].iloc[-1] == 2


def test_cheating_measurements_on_the_same_data(untrained, tiny_root):
    measured = cheating.cheating_measurements({"clean": untrained, "cheating": untrained}, tiny_root,
                                              layer="denseblock2", n_sites=4)
    table, per_image = measured  # a named tuple: unpacks as before
    assert measured.table is table and measured.per_image is per_image
    assert table["model"].tolist() == ["clean", "cheating"]
    assert {"acc_train_with_cue", "acc_train_without_cue", "acc_held_out", "grad_camo_cue_sites",
            "grad_camo_held_out", "cue_dependence"} <= set(table.columns)
    assert set(table["masks"]) == {"truth"}  # the synthetic set has its cell masks
    # the same model on both sides: no difference, and the paired verdict says the claim does not hold
    assert table["grad_camo_cue_sites"].nunique() == 1
    from rxlib.explain.verdicts import grad_camo_verdicts

    cue = [v for v in grad_camo_verdicts(cheat_scores=per_image, group=None, n_resamples=99) if v.claim.endswith("cue")]
    assert cue[0].estimate == pytest.approx(0.0) and cue[0].holds is not True


def test_cued_training_sites_differ_from_the_clean_ones_in_the_cue_channel_only(tiny_root):
    clean = split_sites(tiny_root, "train")
    cued = cheating.cued_training_sites(tiny_root)
    assert cued.table["site_id"].tolist() == clean.table["site_id"].tolist()
    raw_clean, raw_cued = clean.raw_images([0, 1]), cued.raw_images([0, 1])
    assert np.array_equal(raw_clean[:, :5], raw_cued[:, :5])
    assert not np.array_equal(raw_clean[:, 5], raw_cued[:, 5])
    assert cued.cue is not None and clean.cue is None


def test_cheating_table():
    table = cheating.cheating_table({"clean": {"acc_train_with_cue": 0.8, "acc_train_without_cue": 0.8,
                                               "grad_camo_cue_sites": 0.8},
                                     "cheating": {"acc_train_with_cue": 0.95, "acc_train_without_cue": 0.4,
                                                  "grad_camo_cue_sites": 0.6}})
    assert table.set_index("model").loc["cheating", "cue_dependence"] == pytest.approx(0.55)


def test_dcmix_finds_the_only_informative_channel():
    torch.manual_seed(0)
    negatives = torch.randn(40, 6, 16, 16)
    positives = torch.randn(40, 6, 16, 16)
    positives[:, 2] += 1.5  # only channel w3 tells the classes apart
    model = train_dcmix_binary(positives, negatives, steps=60, crop=None, width=4)
    weights = model.channel_importance()
    assert weights.sum() == pytest.approx(1.0, abs=1e-5) and int(weights.argmax()) == 2
    with pytest.raises(ValueError, match="two images"):
        train_dcmix_binary(positives[:1], negatives)


def test_dcmix_per_class_table():
    torch.manual_seed(0)
    images = torch.randn(30, 6, 16, 16)
    labels = np.repeat([0, 1, 2], 10)
    images[labels == 0, 4] += 2.0
    table = dcmix_per_class(images, labels, [0, 1, 2], control=2, val=(images, labels), steps=40, crop=None, width=4)
    assert table.index.tolist() == [0, 1] and list(table.columns[:6]) == [f"w{i}" for i in range(1, 7)]
    assert np.allclose(table[[f"w{i}" for i in range(1, 7)]].sum(axis=1), 1.0)
    assert table.loc[0, ["w1", "w2", "w3", "w4", "w5", "w6"]].astype(float).idxmax() == "w5"
    assert table["val_balanced_accuracy"].between(0, 1).all()


def test_small_conv_net_shapes():
    net = SmallConvNet(1, 3, width=4)
    assert net(torch.zeros(2, 1, 20, 24)).shape == (2, 3) and net.in_channels == 1


def test_normalised_images(tiny_root):
    images, labels = normalised_images(split_sites(tiny_root, "test"))
    assert images.ndim == 4 and len(images) == len(labels)


def test_dcmix_streaming_equals_the_stacked_version_and_caps_the_sample(tiny_root):
    train, val = split_sites(tiny_root, "train"), split_sites(tiny_root, "test")
    control = int(train.table.loc[train.table["well_type"] == "negative_control", "label"].iloc[0])
    classes = sorted(set(train.table["label"]))
    kw = {"steps": 5, "crop": 16, "width": 4}
    streamed = dcmix_per_class_streaming(train, classes, control, val=val, sites_per_class=10_000, **kw)
    images, labels = normalised_images(train)
    stacked = dcmix_per_class(images, labels, classes, control, val=normalised_images(val), **kw)
    pd.testing.assert_frame_equal(streamed, stacked)
    labels = np.repeat([0, 1, 2], [5, 50, 1])
    chosen = class_sample(labels, 1, 8, seed=3)
    assert len(chosen) == 8 and set(labels[chosen]) == {1} and np.array_equal(chosen, class_sample(labels, 1, 8, seed=3))
    assert class_sample(labels, 0, 8).tolist() == [0, 1, 2, 3, 4]


def test_sample_positions_never_exceeds_n_with_more_groups_than_n():
    table = pd.DataFrame({"label": np.repeat(np.arange(50), 3)})
    chosen = sample_positions(table, 10, by="label", seed=2)
    assert len(chosen) == 10 and table["label"].iloc[chosen].nunique() == 10
    assert np.array_equal(chosen, sample_positions(table, 10, by="label", seed=2))
    few = pd.DataFrame({"label": np.repeat(np.arange(4), 10)})
    assert len(sample_positions(few, 12, by="label")) == 12  # 3 per group, as before


def test_grad_camo_without_truth_uses_the_segmentation(untrained, tiny_root, tmp_path):
    import shutil

    sites = split_sites(tiny_root, "test")
    frame = grad_camo_dataset(untrained, sites, tiny_root, [0, 1], layer="denseblock2", masks="segmentation")
    assert set(frame["masks"]) == {"segmentation"} and frame["phenotype_share"].isna().all()
    assert frame["grad_camo"].between(0, 1).all()
    plain = tmp_path / "no-truth"  # the same images without truth/: auto picks the segmentation
    shutil.copytree(tiny_root, plain, ignore=shutil.ignore_patterns("truth", ".rxlib-*"))
    model = build_model("tiny_densenet", 1139, embedding_dim=16).eval()
    frame = grad_camo_dataset(model, split_sites(plain, "test", storage="png"), plain, [0, 1], layer="denseblock2")
    assert set(frame["masks"]) == {"segmentation"}
    with pytest.raises(ValueError, match="no truth/masks"):
        grad_camo_dataset(model, split_sites(plain, "test", storage="png"), plain, masks="truth")


def test_example_titles_quote_class_and_probability():
    examples = pd.DataFrame({"cell_type": ["A", "B"], "label": [1, 3], "top1_prob": [0.612, 0.5]})
    assert example_titles(examples) == ["A, class 1 (p=0.61)", "B, class 3 (p=0.50)"]


def test_cue_site_cams_one_block_of_rows_per_model(untrained, tiny_root):
    grid = cheating.cue_site_cams({"clean": untrained, "cheating": untrained}, tiny_root, layer="denseblock2",
                                  n_sites=2, seed=0)
    assert grid["images"].shape[0] == 4 and len(grid["cams"]) == 4 and len(grid["titles"]) == 4
    assert grid["titles"][0].startswith("clean: ") and grid["titles"][2].startswith("cheating: ")
    assert np.array_equal(grid["images"][:2], grid["images"][2:])
    assert grid["cams"][0].shape == grid["images"].shape[2:]
    assert np.allclose(grid["cams"][0], grid["cams"][2])  # the same model: the same maps


def test_segmentation_check_with_and_without_truth(tiny_root, tmp_path):
    import shutil

    from rxlib.explain.gradcamo import SEGMENTATION_COLUMNS, segmentation_check

    sites = split_sites(tiny_root, "test")
    found = segmentation_check(tiny_root, sites, 2, seed=0)
    assert list(found.table.columns) == list(SEGMENTATION_COLUMNS) and len(found.table) >= 1
    assert found.table["dice"].between(0, 1).all() and "scored against the truth masks" in found.note
    plain = tmp_path / "no-truth"
    shutil.copytree(tiny_root, plain, ignore=shutil.ignore_patterns("truth", ".rxlib-*"))
    missing = segmentation_check(plain, sites, 2)
    assert missing.table.empty and missing.note.startswith(f"no truth masks under {plain}")
