"""Which sites have images: the real pieces (some sites partial, most without images) and a tiny set."""
from __future__ import annotations

import pandas as pd
import pytest

from rxlib.data import read_metadata
from rxlib.data.availability import complete_sites, example_site, image_coverage, imaged_sample, imaged_sites


def test_coverage_of_a_complete_set(tiny_root):
    table = read_metadata(tiny_root)
    assert image_coverage(tiny_root, table) == {"sites": len(table), "complete": len(table), "partial": 0, "none": 0}
    shown = example_site(tiny_root, table)
    assert shown.root == tiny_root and shown.row["split"] == "train" and shown.row["well_type"] == "treatment"
    assert shown.row["site_id"] == table[(table["split"] == "train") & (table["well_type"] == "treatment")].iloc[0]["site_id"]


def test_a_missing_channel_makes_a_site_partial(tiny_root):
    table = read_metadata(tiny_root)
    first = table[(table["split"] == "train") & (table["well_type"] == "treatment")].iloc[0]
    (tiny_root / f"{first['image_stem']}_w5.png").unlink()
    assert not complete_sites(tiny_root, table)[first.name]
    assert imaged_sites(tiny_root, table)[first.name]
    assert image_coverage(tiny_root, table)["partial"] == 1
    assert example_site(tiny_root, table).row["site_id"] != first["site_id"]


def test_real_pieces(real_rxrx1):
    root = real_rxrx1 / "kaggle-2023"
    table = read_metadata(root)
    # README of the pieces: 18 plates, site 1 complete, site 2 without w5/w6
    assert image_coverage(root, table) == {"sites": len(table), "complete": 18, "partial": 18,
                                           "none": len(table) - 36}
    shown = example_site(root, table)
    assert shown.row["well"] == "B02" and shown.row["site"] == 1 and "first site that does" in shown.note
    sample = imaged_sample(root, table, 3000, seed=0)
    assert len(sample) == 36 and imaged_sites(root, sample).all()


def test_metadata_without_images_falls_back_or_names_the_folders(real_rxrx1):
    root19, root23 = real_rxrx1 / "kaggle-2019", real_rxrx1 / "kaggle-2023"
    table19 = read_metadata(root19)
    assert imaged_sample(root19, table19, 100).empty
    shown = example_site(root19, table19, fallback=(root23, read_metadata(root23)))
    assert shown.root == root23 and str(root19) in shown.note
    with pytest.raises(FileNotFoundError, match="kaggle-2019"):
        example_site(root19, table19)


def test_check_trainable(tiny_root, real_rxrx1):
    from rxlib.data.availability import check_trainable
    from rxlib.io import RxRx1DataError

    check_trainable(tiny_root, read_metadata(tiny_root))  # complete, 3 labelled classes in train
    root = real_rxrx1 / "kaggle-2023"
    with pytest.raises(RxRx1DataError, match=r"kaggle-2023 cannot train a model: 18 of its \d+ sites have all six "
                                             r"channel images, and the imaged labelled training sites cover 1 class"):
        check_trainable(root, read_metadata(root))


def test_class_scheme_of_a_synthetic_set_without_truth(tmp_path):
    from rxlib.data.metadata import ClassScheme, class_scheme

    rows = [("treatment", 0), ("treatment", 5), ("positive_control", 10), ("positive_control", 11),
            ("negative_control", 13)]
    pd.DataFrame(rows, columns=["well_type", "sirna_id"]).to_csv(tmp_path / "metadata.csv", index=False)
    # treatments 0..9, positive controls 10..12 (12 absent here), the negative control 13
    assert class_scheme(tmp_path) == ClassScheme(10, 3)
    pd.DataFrame([("treatment", 3), ("negative_control", 1138)], columns=["well_type", "sirna_id"]).to_csv(
        tmp_path / "metadata.csv", index=False)
    assert class_scheme(tmp_path) == ClassScheme()  # RxRx1's own negative control: RxRx1's scheme


def test_example_site_title_and_an_absent_fallback(tiny_root):
    table = read_metadata(tiny_root)
    shown = example_site(tiny_root, table, fallback=(None, None))  # real pieces absent: no fallback
    row = shown.row
    assert shown.title == f"{row['site_id']} ({row['cell_type']}, class {row['label']})"


def test_intensity_sample_from_the_root_or_its_fallback(tiny_root, real_rxrx1):
    from rxlib.data.availability import intensity_sample

    table = read_metadata(tiny_root)
    own = intensity_sample(tiny_root, table, 100, fallback=(None, None))
    n = len(table)
    assert own.root == tiny_root and len(own.sites) == n and own.note == f"intensities of {n} sites with images, from {tiny_root}"
    root19, root23 = real_rxrx1 / "kaggle-2019", real_rxrx1 / "kaggle-2023"
    other = intensity_sample(root19, read_metadata(root19), 100, fallback=(root23, read_metadata(root23)))
    assert other.root == root23 and len(other.sites) == 36
    assert other.note.startswith(f"{root19} holds no images: Figure 3 is drawn from the real pieces in {root23}")
    with pytest.raises(FileNotFoundError, match="kaggle-2019"):
        intensity_sample(root19, read_metadata(root19), 100, fallback=(None, None))


def test_real_example_reads_the_real_site_or_says_it_is_absent(real_rxrx1):
    from rxlib.data.availability import REAL_EXAMPLE_SITE, optional_metadata, real_example

    absent = real_example(None, None)
    assert absent.stack is None and "real RxRx1 pieces not found" in absent.note
    assert optional_metadata(None) is None
    root = real_rxrx1 / "kaggle-2023"
    found = real_example(root, optional_metadata(root))
    assert found.stack.shape == (6, 512, 512) and found.title == f"real RxRx1: {REAL_EXAMPLE_SITE} (negative control)"
    with pytest.raises(KeyError, match="no-such-site"):
        real_example(root, optional_metadata(root), "no-such-site")
