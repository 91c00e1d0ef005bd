from pathlib import Path

import pandas as pd
import pytest

from rxlib.data.metadata import (
    COLUMNS,
    MetadataError,
    class_scheme,
    declared_plates,
    declared_setting,
    detect_layout,
    read_metadata,
)
from rxlib.io import RxRx1DataError


def test_official_layout_is_normalised(tiny_root):
    table = read_metadata(tiny_root)
    assert table.attrs["layout"] == "official"
    assert list(table.columns) == COLUMNS
    assert len(table) == 12
    row = table[table["site_id"] == "HEPG2-01_1_B03_2"].iloc[0]
    assert row["split"] == "train" and row["label"] == 0 and row["cell_type"] == "HEPG2"
    assert row["image_stem"] == "images/HEPG2-01/Plate1/B03_s2"


def test_unknown_cell_type_names_the_row(tiny_root):
    meta = pd.read_csv(tiny_root / "metadata.csv")
    meta.loc[3, "cell_type"] = "HELA"
    meta.to_csv(tiny_root / "metadata.csv", index=False)
    with pytest.raises(RxRx1DataError, match=r"metadata.csv: unknown cell type.*line 5: cell_type='HELA'"):
        read_metadata(tiny_root)


@pytest.mark.parametrize("column,value,message", [
    ("well", "Z99", "not a well"),
    ("site", 3, "site must be 1 or 2"),
    ("well_type", "mock", "well type"),
    ("sirna_id", 5000, "class id outside"),
    ("dataset", "val", "dataset must be"),
])
def test_bad_values_name_file_and_line(tiny_root, column, value, message):
    meta = pd.read_csv(tiny_root / "metadata.csv")
    meta[column] = meta[column].astype(object)
    meta.loc[0, column] = value
    meta.to_csv(tiny_root / "metadata.csv", index=False)
    with pytest.raises(RxRx1DataError, match=message) as err:
        read_metadata(tiny_root)
    assert "metadata.csv" in str(err.value) and "line 2" in str(err.value)


def test_missing_column_and_duplicate_site(tiny_root):
    meta = pd.read_csv(tiny_root / "metadata.csv")
    meta.drop(columns="sirna_id").to_csv(tiny_root / "metadata.csv", index=False)
    with pytest.raises(RxRx1DataError, match="missing column"):
        read_metadata(tiny_root)
    pd.concat([meta, meta.iloc[:1]]).to_csv(tiny_root / "metadata.csv", index=False)
    with pytest.raises(RxRx1DataError, match="more than once.*HEPG2-01_1_B02_1"):
        read_metadata(tiny_root)


def test_no_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(RxRx1DataError, match="no RxRx1 metadata found"):
        detect_layout(tmp_path)


def test_class_scheme_defaults_to_rxrx1(tiny_root):
    scheme = class_scheme(tiny_root)
    assert (scheme.n_treatments, scheme.n_positive_controls, scheme.n_classes) == (1108, 30, 1139)


def _kaggle_release(real_rxrx1: Path, year: int) -> pd.DataFrame:
    return read_metadata(real_rxrx1 / f"kaggle-{year}")


def test_both_kaggle_releases_give_the_same_class_ids(real_rxrx1):
    old, new = _kaggle_release(real_rxrx1, 2019), _kaggle_release(real_rxrx1, 2023)
    assert old.attrs["layout"] == "kaggle-2019" and new.attrs["layout"] == "kaggle-2023"
    joined = old.merge(new, on="site_id", suffixes=("_19", "_23"))
    assert len(joined) == len(old) == 125510          # RxRx1's documented number of sites
    assert (joined["label_19"] == joined["label_23"]).all()
    assert (joined["well_type_19"] == joined["well_type_23"]).all()
    assert set(new.loc[new["well_type"] == "negative_control", "label"]) == {1138}
    assert set(new.loc[new["well_type"] == "positive_control", "label"]) <= set(range(1108, 1138))
    assert (new.loc[(new["split"] == "test") & (new["well_type"] == "treatment"), "label"] == -1).all()


def test_kaggle_unknown_cell_type_names_file_and_line(real_rxrx1, tmp_path):
    train = pd.read_csv(real_rxrx1 / "kaggle-2023" / "train.csv").head(20)
    train.loc[7, "experiment"] = "HELA-01"
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(RxRx1DataError, match=r"train.csv: unknown cell type.*line 9"):
        read_metadata(tmp_path)


def test_kaggle_2023_unknown_sirna_name(real_rxrx1, tmp_path):
    train = pd.read_csv(real_rxrx1 / "kaggle-2023" / "train.csv").head(5)
    train.loc[2, "sirna"] = "sirna_99999"
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(RxRx1DataError, match="sirna_99999"):
        read_metadata(tmp_path)


def test_declared_settings_of_a_synthetic_set(tmp_path):
    assert declared_setting(tmp_path, "image_size", 512) == 512 and declared_plates(tmp_path) == 4  # RxRx1: no params
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "params.json").write_text('{"config": {"image_size": 64, "n_plates": 2}}')
    assert declared_setting(tmp_path, "image_size", 512) == 64 and declared_plates(tmp_path) == 2
    with pytest.raises(MetadataError, match=r"params.json: unreadable or without config.n_sites"):
        declared_setting(tmp_path, "n_sites", 1)
    (tmp_path / "truth" / "params.json").write_text('{"config": {"n_plates": 0}}')
    with pytest.raises(MetadataError, match="positive integer, got 0"):
        declared_plates(tmp_path)
