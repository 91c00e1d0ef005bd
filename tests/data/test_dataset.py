import numpy as np
import pytest
import torch

from rxlib.data import RxRx1Dataset, load_site, read_metadata
from rxlib.data.stats import image_intensities, normalisation_stats


def test_items_have_the_documented_form(tiny_root):
    ds = RxRx1Dataset(tiny_root, split="train")
    assert len(ds) == 8
    item = ds[1]
    assert item["image"].shape == (6, 16, 16) and item["image"].dtype == torch.float32
    assert item["cell_type"].tolist() == [1.0, 0.0, 0.0, 0.0]          # HEPG2
    assert item["label"].dtype == torch.int64
    means = item["image"].mean(dim=(1, 2))
    stds = item["image"].std(dim=(1, 2))
    assert torch.allclose(means, torch.zeros(6), atol=1e-5) and torch.allclose(stds, torch.ones(6), atol=1e-3)


def test_filters_and_u2os_one_hot(tiny_root):
    ds = RxRx1Dataset(tiny_root, split="test", sites=(1,), well_types=["treatment"])
    assert len(ds) == 1 and ds[0]["cell_type"].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_none_normalisation_is_raw_over_255(tiny_root):
    ds = RxRx1Dataset(tiny_root, normalize="none")
    row = ds.table.iloc[0]
    raw = load_site(tiny_root, row["experiment"], row["plate"], row["well"], row["site"])
    np.testing.assert_allclose(ds[0]["image"].numpy(), raw / 255.0, rtol=1e-6)


@pytest.mark.parametrize("by", ["experiment", "plate"])
def test_group_normalisation_uses_pooled_statistics(tiny_root, by):
    table = read_metadata(tiny_root)
    intensities, problems = image_intensities(tiny_root, table, progress=False)
    assert problems.empty
    stats = normalisation_stats(intensities, by)
    ds = RxRx1Dataset(tiny_root, normalize=by, stats=stats, experiments=["HEPG2-01"])
    pixels = torch.stack([ds[i]["image"] for i in range(len(ds))])     # all pixels of the group
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-4)
    assert torch.allclose(pixels.std(dim=(0, 2, 3), unbiased=False), torch.ones(6), atol=1e-3)


def test_group_normalisation_without_stats_is_an_error(tiny_root):
    with pytest.raises(ValueError, match="needs the per-experiment statistics"):
        RxRx1Dataset(tiny_root, normalize="experiment")
    with pytest.raises(ValueError, match="normalize='batch'"):
        RxRx1Dataset(tiny_root, normalize="batch")


def test_augment_is_a_dihedral_transform_and_seeded(tiny_root):
    plain = RxRx1Dataset(tiny_root)[0]["image"]
    ds = RxRx1Dataset(tiny_root, augment=True)
    torch.manual_seed(3)
    first = [ds[0]["image"] for _ in range(12)]
    torch.manual_seed(3)
    again = [ds[0]["image"] for _ in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    variants = [torch.rot90(plain, k, (1, 2)) for k in range(4)]
    variants += [torch.flip(v, (2,)) for v in variants]
    for image in first:
        assert any(torch.equal(image, v) for v in variants)
    assert len({tuple(image.flatten()[:8].tolist()) for image in first}) > 1


def test_dataset_does_not_change_the_table_given(tiny_root):
    table = read_metadata(tiny_root)
    before = table.copy()
    RxRx1Dataset(tiny_root, table, split="test")
    assert table.equals(before)


def test_shuffled_labels_keep_the_counts_and_break_the_tie_to_the_image(tiny_root):
    ds = RxRx1Dataset(tiny_root, split="train")
    shuffled = ds.with_shuffled_labels(seed=0)
    assert sorted(shuffled.table["label"]) == sorted(ds.table["label"])
    assert (shuffled.table["image_stem"] == ds.table["image_stem"]).all()
    assert [int(shuffled[i]["label"]) for i in range(len(ds))] == shuffled.table["label"].tolist()
    assert shuffled.table["label"].tolist() != ds.table["label"].tolist()  # this seed moves some labels
    assert ds.with_shuffled_labels(seed=0).table["label"].tolist() == shuffled.table["label"].tolist()  # seeded
    assert torch.equal(shuffled[0]["image"], ds[0]["image"])
