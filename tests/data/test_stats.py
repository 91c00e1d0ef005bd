import pandas as pd
import pytest

from rxlib.cli import main
from rxlib.data.metadata import read_metadata
from rxlib.data.stats import class_sets, headline, normalisation_stats, summary


def test_table1_from_the_real_2023_release(real_rxrx1):
    table = read_metadata(real_rxrx1 / "kaggle-2023")
    sets = class_sets(table)
    assert dict(zip(sets["samples_per_class"], sets["n_classes"])) == {29: 2, 31: 2, 32: 35, 33: 1069}
    assert headline(table) == {"N_train": 36517, "N_test": 19899, "N_total": 56416,
                               "N_gray_scale": 338496, "N_class": 1108}


def test_real_summary_counts_experiments_per_cell_type(real_rxrx1):
    s = summary(read_metadata(real_rxrx1 / "kaggle-2023"))
    both = s[s["well_type"] == "all"].groupby("cell_type")["experiments"].sum()
    assert both.to_dict() == {"HEPG2": 11, "HUVEC": 24, "RPE": 11, "U2OS": 5, "all": 51}


def test_rxlib_stats_command_on_the_real_files(real_rxrx1, tmp_path, capsys):
    assert main(["stats", "--data", str(real_rxrx1 / "kaggle-2023"), "--out", str(tmp_path), "--quiet"]) == 0
    sets = pd.read_csv(tmp_path / "class_sets.csv")
    assert list(sets.columns) == ["samples_per_class", "n_classes"] and sets["n_classes"].sum() == 1108
    intensities = pd.read_csv(tmp_path / "intensities.csv")
    assert len(intensities) == 180                        # the 180 real PNGs, no more
    assert intensities.loc[intensities["channel"] == 1, "n_nuclei"].min() > 10


def test_rxlib_stats_scan_writes_every_problem(tiny_root, tmp_path):
    (tiny_root / "images/HEPG2-01/Plate1/B03_s1_w5.png").unlink()
    assert main(["stats", "--data", str(tiny_root), "--out", str(tmp_path), "--scan", "--quiet"]) == 0
    problems = pd.read_csv(tmp_path / "problems.csv")
    assert problems["kind"].tolist() == ["missing_channel"]
    intensities = pd.read_csv(tmp_path / "intensities.csv")
    assert len(intensities) == 12 * 6 - 1


def test_rxlib_stats_bad_root_is_a_clear_error(tmp_path, capsys):
    assert main(["stats", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no RxRx1 metadata found" in capsys.readouterr().err


def test_normalisation_stats_pool_exactly():
    frame = pd.DataFrame({"experiment": ["E", "E"], "plate": [1, 1], "channel": [1, 1],
                          "mean": [1.0, 3.0], "std": [1.0, 1.0]})
    out = normalisation_stats(frame)
    # pixels N(1,1) and N(3,1) pooled: mean 2, variance 1 + 1 = 2
    assert out["mean"].iloc[0] == 2.0 and abs(out["std"].iloc[0] ** 2 - 2.0) < 1e-12


def test_nuclei_are_counted_on_every_kth_site_only_when_capped(tiny_root):
    from rxlib.data import read_metadata
    from rxlib.data.stats import image_intensities
    from rxlib.segmentation import count_nuclei
    from rxlib.io import read_png
    from rxlib.data.images import channel_paths

    table = read_metadata(tiny_root)
    every, _ = image_intensities(tiny_root, table, progress=False, count_nuclei_w1=True, max_nuclei_sites=None)
    capped, _ = image_intensities(tiny_root, table, progress=False, count_nuclei_w1=True, max_nuclei_sites=3)
    w1_every = every[every["channel"] == 1].reset_index(drop=True)
    w1_capped = capped[capped["channel"] == 1].reset_index(drop=True)
    stride = -(-len(table) // 3)
    counted = w1_capped["n_nuclei"].notna()
    assert counted.tolist() == [i % stride == 0 for i in range(len(table))]
    assert counted.sum() <= 3 and w1_every["n_nuclei"].notna().all()
    assert (w1_capped.loc[counted, "n_nuclei"] == w1_every.loc[counted, "n_nuclei"]).all()
    first = read_png(channel_paths(tiny_root, table.iloc[0]["image_stem"])[0])
    assert w1_every.loc[0, "n_nuclei"] == count_nuclei(first)
    assert (capped["mean"] == every["mean"]).all()  # the cap changes what is counted, not what is read

def test_table1_comparison_and_the_check_of_the_printed_table(real_rxrx1, tiny_root):
    from rxlib.data.stats import PAPER_TABLE1, paper_table1_check, table1_comparison

    real = read_metadata(real_rxrx1 / "kaggle-2023")
    tiny = read_metadata(tiny_root)
    both = table1_comparison(class_sets(tiny), real, "tiny")
    assert list(both.columns) == ["samples_per_class", "paper (as printed)", "real RxRx1 (Kaggle 2023)", "this data (tiny)"]
    assert both.set_index("samples_per_class").loc["total", "real RxRx1 (Kaggle 2023)"] == 1108
    assert "real RxRx1 (Kaggle 2023)" not in table1_comparison(class_sets(tiny), None, "tiny").columns
    assert paper_table1_check(real) == "paper minus real, per class set: {29: 0, 31: 0, 32: -4, 33: -4}"
    assert "not found" in paper_table1_check(None)
    assert sum(PAPER_TABLE1.values()) == 1100
    with pytest.raises(ValueError, match="expected 1108"):
        paper_table1_check(tiny)


def _intensities(n_nuclei_synth: float) -> pd.DataFrame:
    rows = []
    for source, nuclei in (("real", 100.0), ("synthetic", n_nuclei_synth)):
        for channel in (1, 2):
            rows.append({"source": source, "cell_type": "HEPG2", "channel": channel, "mean": 10.0 + channel,
                         "height": 512, "width": 512, "n_nuclei": nuclei})
    return pd.DataFrame(rows)


def test_realism_note_flags_values_far_from_the_real_data():
    from rxlib.data.stats import realism_flags, realism_note, realism_summary

    frame = _intensities(30.0)
    summary = realism_summary(frame[frame["source"] == "real"], frame[frame["source"] == "synthetic"])
    assert realism_flags(summary) == ["nuclei per field of HEPG2 (ratio 0.30)"]
    assert realism_note(summary).startswith("FLAGGED") and "nuclei per field of HEPG2" in realism_note(summary)
    close = _intensities(90.0)
    summary = realism_summary(close[close["source"] == "real"], close[close["source"] == "synthetic"])
    assert realism_flags(summary) == [] and realism_note(summary).startswith("Every synthetic value")
    alone = realism_summary(close.iloc[0:0], close[close["source"] == "synthetic"])
    assert realism_note(alone).startswith("No real images")


def test_channel_variance_first_plate_and_measured_intensities(tiny_root):
    from rxlib.data.stats import channel_variance, first_training_plate, measure_intensities, real_intensities

    table = read_metadata(tiny_root)
    measured = measure_intensities(tiny_root, table)
    assert measured.note == f"images read: {len(table) * 6}; absent or unreadable channel files: 0"
    variance = channel_variance(measured.values)
    assert list(variance.index) == ["mean", "var"] and list(variance.columns) == [1, 2, 3, 4, 5, 6]
    plate = first_training_plate(table)
    first = table[table["split"] == "train"].iloc[0]
    assert plate == {"experiment": first["experiment"], "plate": int(first["plate"])} and type(plate["plate"]) is int
    with pytest.raises(ValueError, match="no training site"):
        first_training_plate(table[table["split"] != "train"])
    empty = real_intensities(None, None, like=measured.values)
    assert empty.values.empty and list(empty.values.columns) == list(measured.values.columns)
