"""The bad-input battery: one case per id, grouped by class, each asserting its exact outcome.

Classes (the id prefix): ``out-`` output folders, ``img-`` images, ``meta-`` metadata, ``disk-``
resume and disk faults, ``cli-`` the command line. Where a user's files are involved, they are
hashed before and after: a refusal changes nothing. Run: ``pytest tests/validation -q``.
"""
from __future__ import annotations

import errno
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from badinputs import (
    gif_bytes,
    jpeg_bytes,
    make_micro,
    png_bytes,
    png_header_only,
    tiny_metadata,
    tree_hashes,
    write_metadata,
)

import rxlib.synth.writer as writer
from rxlib.cli import main
from rxlib.data.images import load_site, load_site_stem
from rxlib.data.metadata import MetadataError, read_metadata
from rxlib.data.scan import scan
from rxlib.data.stats import image_intensities, write_stats
from rxlib.io import (
    CorruptImageError,
    DiskFullError,
    ImageModeError,
    ImageShapeError,
    ImageTooLargeError,
    MissingImageError,
    OutputFolderError,
    RxRx1DataError,
    read_png,
)
from rxlib.outputs import RECORD_NAME, OutputFolder, OutputFolderBusy, claim_output_folder, read_record
from rxlib.synth.writer import SynthFolderNotOurs, SynthParameterMismatch

W1 = "images/HEPG2-01/Plate1/B03_s1_w1.png"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A finished micro synthetic set (seed 0), never modified."""
    return make_micro(tmp_path_factory.mktemp("ref") / "set")


@pytest.fixture
def kaggle_root(real_rxrx1, tmp_path) -> Path:
    """The first rows of the real Kaggle 2019 files (read in place, written small to tmp)."""
    root = tmp_path / "k19"
    root.mkdir()
    for name in ("train.csv", "train_controls.csv", "test.csv", "test_controls.csv"):
        pd.read_csv(real_rxrx1 / "kaggle-2019" / name, dtype=str, keep_default_na=False).head(8).to_csv(
            root / name, index=False)
    return root


def _user_folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "user"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


# ============================================================================================
# Output folders


@pytest.mark.parametrize("files, overwrite, named", [
    pytest.param({"truth/classes.csv": b"class_id,kind\n0,mine\n"}, False, "truth/classes.csv", id="out-user-classes-csv"),
    pytest.param({"images/x/.a.png.123.part": b"mine"}, False, "images/", id="out-user-part-files"),
    pytest.param({"images/x/.a.png.123.part": b"mine"}, True, "images/", id="out-user-part-files-overwrite"),
    pytest.param({"images/HEPG2-01/Plate1/B02_s1_w1.png": b"mine"}, True, "images/", id="out-user-images-overwrite"),
    pytest.param({"train.csv": b"id_code,experiment,plate,well,sirna\n"}, False, "train.csv", id="out-kaggle-layout"),
    pytest.param({"train.csv": b"id_code\n", "train/a.png": b"x"}, True, "train.csv", id="out-kaggle-layout-overwrite"),
    pytest.param({"notes.txt": b"my notes"}, False, "notes.txt", id="out-user-notes"),
    pytest.param({"metadata.csv": b"site_id\n"}, False, "params.json", id="out-metadata-without-params"),
])
def test_synth_refuses_folder_with_foreign_files(tmp_path, files, overwrite, named):
    folder = _user_folder(tmp_path, files)
    before = tree_hashes(folder)
    with pytest.raises(SynthFolderNotOurs, match=named) as err:
        make_micro(folder, overwrite=overwrite)
    assert str(folder) in str(err.value)
    assert tree_hashes(folder) == before


def test_out_empty_user_folder_is_refused(tmp_path):
    folder = tmp_path / "user"
    (folder / "images").mkdir(parents=True)
    with pytest.raises(SynthParameterMismatch, match=r"images/.*params\.json"):
        make_micro(folder)
    assert tree_hashes(folder) == {"images": "<dir>"}


def test_out_user_file_added_inside_rxlib_set_blocks_overwrite(reference, tmp_path):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    (out / "images" / "HEPG2-01" / "mine.png").write_bytes(b"mine")
    before = tree_hashes(out)
    with pytest.raises(SynthFolderNotOurs, match="images/HEPG2-01/mine.png"):
        make_micro(out, seed=1, overwrite=True)
    assert tree_hashes(out) == before


def test_out_overwrite_replaces_only_rxlib_files(reference, tmp_path):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    make_micro(out, seed=1, overwrite=True)
    fresh = make_micro(tmp_path / "fresh", seed=1)
    assert tree_hashes(out) == tree_hashes(fresh)


def test_out_remove_written_keeps_unrecorded_files(tmp_path):
    with claim_output_folder(tmp_path / "o") as folder:
        folder.record("a/b.csv", "c.csv")
        for rel in ("a/b.csv", "c.csv", "a/mine.txt"):
            (folder.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder.path / rel).write_text(rel)
        assert folder.foreign() == ["a/mine.txt"]
        assert folder.remove_written() == ["a/b.csv", "c.csv"]
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*")
                  if p.name != RECORD_NAME + ".lock") == ["a", "a/mine.txt"]


def test_out_second_writer_is_refused(tmp_path):
    out = tmp_path / "busy"
    with claim_output_folder(out, "rxlib synth"):
        with pytest.raises(OutputFolderBusy, match=f"{out} is being written by another process"):
            make_micro(out)
    assert not (out / "metadata.csv").exists()
    make_micro(out)  # once released, the same folder is written normally
    assert (out / "metadata.csv").is_file()


def test_out_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("mine")
    with pytest.raises(SynthParameterMismatch, match="is not a folder"):
        make_micro(target)
    assert target.read_text() == "mine"


def test_out_record_torn_last_line_is_ignored_and_repaired(tmp_path):
    (tmp_path / RECORD_NAME).write_text("# header\na.png\nb.pn")
    assert read_record(tmp_path) == {"a.png"}
    with claim_output_folder(tmp_path) as folder:
        folder.record("c.png")
    assert read_record(tmp_path) == {"a.png", "c.png"}


def test_out_legacy_set_without_record_is_adopted(reference, tmp_path):
    out = tmp_path / "legacy"
    shutil.copytree(reference, out)
    (out / RECORD_NAME).unlink()
    before = tree_hashes(out, skip_hidden=True)
    assert make_micro(out) == out
    assert tree_hashes(out, skip_hidden=True) == before
    assert read_record(out) == read_record(reference)


def test_out_stats_refuses_user_file_in_out(tiny_root, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my summary\n")
    with pytest.raises(OutputFolderError, match="summary.csv"):
        write_stats(tiny_root, out, progress=False)
    assert [p.name for p in out.iterdir() if not p.name.startswith(".rxlib")] == ["summary.csv"]
    assert (out / "summary.csv").read_text() == "my summary\n"


def test_out_stats_rerun_into_its_own_folder(tiny_root, tmp_path):
    first = write_stats(tiny_root, tmp_path / "s", progress=False, intensities=False)
    again = write_stats(tiny_root, tmp_path / "s", progress=False, intensities=False)
    assert set(first) == set(again) == {"class_sets", "summary", "headline"}


# ============================================================================================
# Images


@pytest.mark.parametrize("data, error, words", [
    pytest.param(lambda: png_bytes(mode="I;16"), ImageModeError, "16-bit grayscale", id="img-16-bit"),
    pytest.param(lambda: png_bytes(mode="P"), ImageModeError, "palette", id="img-palette"),
    pytest.param(lambda: png_bytes(mode="1"), ImageModeError, "1-bit", id="img-1-bit"),
    pytest.param(lambda: png_bytes(mode="RGB"), ImageModeError, "RGB colour", id="img-rgb"),
    pytest.param(lambda: png_bytes(mode="RGBA"), ImageModeError, "RGBA", id="img-rgba"),
    pytest.param(lambda: png_bytes(mode="LA"), ImageModeError, "grayscale with alpha", id="img-gray-alpha"),
    pytest.param(jpeg_bytes, CorruptImageError, "JPEG data", id="img-jpeg-named-png"),
    pytest.param(gif_bytes, CorruptImageError, "GIF data", id="img-gif-named-png"),
    pytest.param(lambda: b"", CorruptImageError, "empty file", id="img-empty-file"),
    pytest.param(lambda: b"hello, not an image", CorruptImageError, "not PNG data", id="img-text-named-png"),
    pytest.param(lambda: png_bytes()[:20], CorruptImageError, "header cut short", id="img-header-cut"),
    pytest.param(lambda: png_bytes()[:60], CorruptImageError, "truncated", id="img-truncated"),
    pytest.param(lambda: png_header_only(20000, 20000), ImageTooLargeError, "20000x20000", id="img-20000x20000"),
    pytest.param(lambda: png_header_only(0, 16), ImageTooLargeError, "zero size", id="img-zero-width"),
    pytest.param(lambda: _flip(png_bytes(), 100), CorruptImageError, "broken data stream", id="img-corrupt-idat"),
])
def test_bad_image_is_a_named_error_in_every_reader(tiny_root, data, error, words):
    path = tiny_root / W1
    path.write_bytes(data())
    with pytest.raises(error, match=words) as err:
        read_png(path)
    assert str(path) in str(err.value)
    with pytest.raises(error, match=words):
        load_site_stem(tiny_root, "images/HEPG2-01/Plate1/B03_s1")
    table = read_metadata(tiny_root)
    problems = scan(tiny_root, table, progress=False)
    assert problems["path"].tolist() == [str(path)]
    _, dropped = image_intensities(tiny_root, table, progress=False)
    assert dropped["path"].tolist() == [str(path)]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def test_img_folder_named_png(tiny_root):
    path = tiny_root / W1
    path.unlink()
    path.mkdir()
    with pytest.raises(CorruptImageError, match="is a folder"):
        read_png(path)


def test_img_wrong_size(tiny_root):
    with pytest.raises(ImageShapeError, match=r"B03_s1_w1\.png: image is 16x16, expected 32x32"):
        load_site_stem(tiny_root, "images/HEPG2-01/Plate1/B03_s1", expected_size=32)


def test_img_channels_of_different_sizes(tiny_root):
    (tiny_root / "images/HEPG2-01/Plate1/B03_s1_w4.png").write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    with pytest.raises(ImageShapeError, match=r"B03_s1_w4\.png: image is 8x8, but channel w1"):
        load_site_stem(tiny_root, "images/HEPG2-01/Plate1/B03_s1")


def test_img_missing_channel(tiny_root):
    (tiny_root / "images/HEPG2-01/Plate1/B03_s1_w6.png").unlink()
    with pytest.raises(MissingImageError, match=r"missing image file: .*B03_s1_w6\.png$"):
        load_site_stem(tiny_root, "images/HEPG2-01/Plate1/B03_s1")


def test_img_wrong_case_folder_names_expected_path(tiny_root):
    (tiny_root / "images/HEPG2-01/Plate1").rename(tiny_root / "images/HEPG2-01/plate1")
    expected = tiny_root / "images/HEPG2-01/Plate1"
    with pytest.raises(MissingImageError, match=f"expected {expected}, found .*plate1"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)
    with pytest.raises(MissingImageError, match=f"expected {expected}"):
        read_png(tiny_root / W1)
    problems = scan(tiny_root, read_metadata(tiny_root), progress=False)
    assert set(problems.loc[problems["site_id"].str.startswith("HEPG2"), "kind"]) == {"wrong_case"}
    with pytest.raises(RxRx1DataError, match=f"expected {expected}"):
        write_stats(tiny_root, tiny_root.parent / "stats", progress=False)


def test_img_wrong_case_file_name(tiny_root):
    for c in range(1, 7):
        p = tiny_root / f"images/HEPG2-01/Plate1/B03_s1_w{c}.png"
        p.rename(p.with_name(p.name.lower()))
    with pytest.raises(RxRx1DataError, match=r"expected .*B03_s1_w1\.png, found .*b03_s1_w1\.png"):
        write_stats(tiny_root, tiny_root.parent / "stats", progress=False)


def test_img_stats_lists_every_dropped_image(tiny_root, tmp_path):
    bad = [tiny_root / W1, tiny_root / "images/U2OS-02/Plate1/B02_s2_w3.png"]
    bad[0].write_bytes(png_bytes(mode="I;16"))
    bad[1].write_bytes(png_bytes()[:50])
    written = write_stats(tiny_root, tmp_path / "s", progress=False)
    dropped = pd.read_csv(written["dropped_images"])
    assert written.n_dropped == 2 and sorted(dropped["path"]) == sorted(map(str, bad))
    assert len(pd.read_csv(written["intensities"])) == 12 * 6 - 2


def test_img_valid_png_reads_exactly(tiny_root):
    array = np.arange(256, dtype=np.uint8).reshape(16, 16)
    (tiny_root / W1).write_bytes(png_bytes(array))
    np.testing.assert_array_equal(read_png(tiny_root / W1), array)
    assert load_site_stem(tiny_root, "images/HEPG2-01/Plate1/B03_s1").shape == (6, 16, 16)


# ============================================================================================
# Metadata


def _set(column: str, row: int, value: str):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame
    return edit


@pytest.mark.parametrize("edit, words", [
    pytest.param(_set("plate", 0, "1.5"), r"plate must be a non-negative integer.*line 2: plate='1\.5'", id="meta-plate-1.5"),
    pytest.param(_set("sirna_id", 2, "3.7"), r"sirna_id must be a non-negative integer.*line 4: sirna_id='3\.7'",
                 id="meta-sirna-id-3.7"),
    pytest.param(_set("plate", 0, "5"), r"plate must be in 1\.\.4: line 2: plate='5'", id="meta-plate-5"),
    pytest.param(_set("plate", 0, "0"), r"plate must be in 1\.\.4: line 2: plate='0'", id="meta-plate-0"),
    pytest.param(_set("plate", 0, ""), r"plate must be a non-negative integer.*line 2: plate=''", id="meta-plate-empty"),
    pytest.param(_set("site", 1, "3"), r"site must be 1 or 2: line 3: site='3'", id="meta-site-3"),
    pytest.param(_set("well", 0, "Z99"), r"not a well of a 384-well plate.*line 2: well='Z99'", id="meta-well-z99"),
    pytest.param(_set("experiment", 0, "HEPG2-1"), r"experiment must match .*line 2: experiment='HEPG2-1'",
                 id="meta-experiment-format"),
    pytest.param(_set("cell_type", 0, "HELA"), r"metadata.csv: unknown cell type.*line 2: cell_type='HELA'",
                 id="meta-cell-type-unknown"),
    pytest.param(_set("cell_type", 0, "U2OS"),
                 r"cell type disagrees with the experiment's prefix: line 2: cell_type='U2OS', experiment='HEPG2-01'",
                 id="meta-cell-type-vs-experiment"),
    pytest.param(_set("sirna", 2, "s00001"), r"sirna and sirna_id do not map one to one.*line 4: sirna='s00001'",
                 id="meta-sirna-vs-sirna-id"),
    pytest.param(_set("well_type", 2, "negative_control"),
                 r"well type disagrees with the class id: line 4: well_type='negative_control', sirna_id='0'",
                 id="meta-well-type-vs-label"),
    pytest.param(_set("sirna_id", 0, "5000"), r"class id outside 0\.\.1138: line 2: sirna_id='5000'", id="meta-label-range"),
    pytest.param(_set("dataset", 0, "val"), r"dataset must be train or test: line 2", id="meta-dataset"),
    pytest.param(_set("site_id", 0, "HEPG2-01_1_B02_9"), r"site_id is not \{well_id\}_\{site\}: line 2", id="meta-site-id"),
    pytest.param(lambda f: pd.concat([f, f.iloc[:1]]), r"site_id listed more than once: line 2: .*line 14",
                 id="meta-duplicate-site"),
    pytest.param(lambda f: f.drop(columns="sirna_id"), r"missing column\(s\) \['sirna_id'\]", id="meta-missing-column"),
    pytest.param(lambda f: f.assign(plate=["x"] + ["1"] * 11, site=["1"] * 11 + ["7"]),
                 r"plate must be a non-negative integer.*: line 2: plate='x' \| site must be 1 or 2: line 13: site='7'",
                 id="meta-all-failures-at-once"),
])
def test_bad_metadata_names_file_line_column_value(tiny_root, edit, words):
    write_metadata(tiny_root, edit(tiny_metadata(tiny_root)))
    with pytest.raises(MetadataError, match=words) as err:
        read_metadata(tiny_root)
    assert str(tiny_root / "metadata.csv") in str(err.value)


@pytest.mark.parametrize("content, words", [
    pytest.param(b"", "empty file", id="meta-empty-file"),
    pytest.param(b"\n\n", "empty file", id="meta-blank-file"),
    pytest.param(None, "header only, no data rows", id="meta-header-only"),
    pytest.param("dup", r"line 1: duplicate column name\(s\) \['plate'\]", id="meta-duplicate-column"),
    pytest.param("latin1", r"line 3: not UTF-8 text \(byte 0xe9\)", id="meta-not-utf8"),
    pytest.param("extra-field", r"malformed CSV: .*line 4", id="meta-tokenizing"),
])
def test_unreadable_metadata_file(tiny_root, content, words):
    path = tiny_root / "metadata.csv"
    text = path.read_text()
    lines = text.splitlines()
    if content is None:
        path.write_text(lines[0] + "\n")
    elif content == "dup":
        path.write_text(lines[0] + ",plate\n" + "\n".join(line + ",1" for line in lines[1:]) + "\n")
    elif content == "latin1":
        lines[2] = lines[2].replace("train", "tr\u00e9in")
        path.write_bytes("\n".join(lines).encode("latin-1"))
    elif content == "extra-field":
        lines[3] += ",surplus"
        path.write_text("\n".join(lines) + "\n")
    else:
        path.write_bytes(content)
    with pytest.raises(MetadataError, match=words) as err:
        read_metadata(tiny_root)
    assert str(path) in str(err.value)


def test_meta_two_layouts_in_one_folder(tiny_root, kaggle_root):
    shutil.copy(kaggle_root / "train.csv", tiny_root / "train.csv")
    with pytest.raises(MetadataError, match=r"two metadata layouts: the official metadata.csv and Kaggle's train.csv"):
        read_metadata(tiny_root)


def test_meta_bom_and_blank_lines_load_correctly(tiny_root):
    path = tiny_root / "metadata.csv"
    expected = read_metadata(tiny_root)
    lines = path.read_text().splitlines()
    path.write_bytes(("\ufeff" + "\n".join(lines[:5] + [""] + lines[5:]) + "\n").encode("utf-8"))
    pd.testing.assert_frame_equal(read_metadata(tiny_root), expected)
    lines[8] = lines[8].replace(",HEPG2-01,1,", ",HEPG2-01,9,", 1)
    path.write_text("\n".join(lines[:5] + [""] + lines[5:]) + "\n")
    with pytest.raises(MetadataError, match=r"plate must be in 1\.\.4: line 10: plate='9'"):
        read_metadata(tiny_root)


def test_meta_synthetic_plates_follow_params(reference, tmp_path):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    meta = tiny_metadata(out)
    meta.loc[0, "plate"] = "2"
    meta.loc[0, "site_id"] = meta.loc[0, "site_id"].replace("_1_", "_2_")
    meta.loc[0, "well_id"] = meta.loc[0, "well_id"].replace("_1_", "_2_")
    write_metadata(out, meta)
    with pytest.raises(MetadataError, match=r"plate must be in 1\.\.1: line 2: plate='2'"):
        read_metadata(out)
    params = json.loads((out / "truth/params.json").read_text())
    params["config"]["n_plates"] = 6
    (out / "truth/params.json").write_text(json.dumps(params))
    assert read_metadata(out)["plate"].max() == 2


@pytest.mark.parametrize("name, column, row, value, words", [
    pytest.param("train.csv", "sirna", 1, "3.7", r"train.csv: sirna must be a non-negative integer.*line 3: sirna='3\.7'",
                 id="meta-kaggle-sirna-3.7"),
    pytest.param("train.csv", "plate", 1, "1.5", r"plate must be a non-negative integer.*line 3: plate='1\.5'",
                 id="meta-kaggle-plate-1.5"),
    pytest.param("train.csv", "sirna", 0, "1138",
                 r"well type disagrees with the class id: line 2: sirna='1138'", id="meta-kaggle-control-in-train"),
    pytest.param("train_controls.csv", "well_type", 0, "treatment",
                 r"train_controls.csv: well type disagrees.*line 2: well_type='treatment'", id="meta-kaggle-well-type"),
    pytest.param("test.csv", "id_code", 2, "HEPG2-08_1_Z03",
                 r"test.csv: id_code is not \{experiment\}_\{plate\}_\{well\}: line 4", id="meta-kaggle-id-code"),
    pytest.param("test.csv", "experiment", 0, "HELA-01", r"test.csv: unknown cell type.*line 2: cell_type='HELA'",
                 id="meta-kaggle-cell-type"),
])
def test_bad_kaggle_metadata(kaggle_root, name, column, row, value, words):
    frame = pd.read_csv(kaggle_root / name, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(kaggle_root / name, index=False)
    with pytest.raises(MetadataError, match=words):
        read_metadata(kaggle_root)


def test_meta_kaggle_2023_unknown_name_and_header_only(real_rxrx1, tmp_path):
    train = pd.read_csv(real_rxrx1 / "kaggle-2023" / "train.csv").head(5)
    train.loc[2, "sirna"] = "sirna_99999"
    train.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(MetadataError, match=r"siRNA name not in the RxRx1 label table: line 4: sirna='sirna_99999'"):
        read_metadata(tmp_path)
    train.head(0).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(MetadataError, match=r"train.csv: header only"):
        read_metadata(tmp_path)


# ============================================================================================
# Resume and disk faults


def _partial(out: Path, monkeypatch, sites: int = 4) -> None:
    real = writer.process_site
    calls = {"n": 0}

    def crash(state, task):
        calls["n"] += 1
        if calls["n"] > sites:
            raise KeyboardInterrupt("simulated kill")
        return real(state, task)

    monkeypatch.setattr(writer, "process_site", crash)
    with pytest.raises(KeyboardInterrupt):
        make_micro(out)
    monkeypatch.setattr(writer, "process_site", real)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[:45]), id="disk-resume-truncated-png"),
    pytest.param(lambda p: p.write_bytes(png_bytes(mode="I;16")), id="disk-resume-16-bit-png"),
    pytest.param(lambda p: p.write_bytes(png_bytes(np.zeros((8, 8), np.uint8))), id="disk-resume-wrong-size"),
    pytest.param(lambda p: p.write_bytes(b""), id="disk-resume-empty-png"),
])
def test_resume_redraws_a_damaged_finished_file(reference, tmp_path, monkeypatch, damage):
    out = tmp_path / "partial"
    _partial(out, monkeypatch)
    target = out / "images/HEPG2-01/Plate1/B02_s1_w3.png"
    damage(target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_micro(out)
    assert any("B02_s1_w3.png" in str(w.message) and "drawn again" in str(w.message) for w in caught)
    assert tree_hashes(out) == tree_hashes(reference)


@pytest.mark.parametrize("where", [
    pytest.param("png", id="disk-full-while-writing-png"),
    pytest.param("metadata", id="disk-full-while-writing-metadata"),
    pytest.param("record", id="disk-full-while-recording"),
])
def test_disk_full_leaves_nothing_taken_as_done(reference, tmp_path, monkeypatch, where):
    out = tmp_path / "full"
    import rxlib.io as rio
    import rxlib.outputs as routputs

    if where == "png":
        def no_space(self, fp, *a, **k):
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr("PIL.Image.Image.save", no_space)
    elif where == "metadata":
        real_to_csv = pd.DataFrame.to_csv

        def no_space(self, path=None, *a, **k):
            if path is not None and ".metadata.csv." in str(path):
                Path(path).write_text("site_id,half")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_to_csv(self, path, *a, **k)
        monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    else:
        def no_space(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(routputs.os, "write", no_space)
    with pytest.raises(DiskFullError, match=f"no space left on device while writing .* in {out}"):
        make_micro(out)
    monkeypatch.undo()
    assert not (out / "metadata.csv").exists()
    assert not [p for p in out.rglob("*.part")]
    assert rio.DiskFullError is DiskFullError
    make_micro(out)  # space again: the same command finishes the set, byte for byte
    assert tree_hashes(out) == tree_hashes(reference)


def test_disk_rerun_of_finished_set_changes_nothing(reference, tmp_path):
    out = tmp_path / "set"
    shutil.copytree(reference, out)
    before = tree_hashes(out)
    make_micro(out)
    assert tree_hashes(out) == before


def test_disk_stray_part_of_rxlib_file_removed_on_resume(reference, tmp_path, monkeypatch):
    out = tmp_path / "partial"
    _partial(out, monkeypatch)
    (out / "images/HEPG2-01/Plate1/.B02_s1_w1.png.abc123.part").write_bytes(b"half")
    make_micro(out)
    assert tree_hashes(out) == tree_hashes(reference)


# ============================================================================================
# The command line: one line naming what is wrong, exit 2, never a traceback


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("args, words", [
    pytest.param(["--profile", "huge"], "profile", id="cli-synth-unknown-profile"),
    pytest.param(["--seed", "-1"], "seed must be a non-negative integer", id="cli-synth-negative-seed"),
    pytest.param(["--workers", "0"], "workers must be an integer >= 1", id="cli-synth-zero-workers"),
])
def test_cli_synth_bad_arguments(tmp_path, capsys, args, words):
    rc, out, err = _cli(["synth", "--out", str(tmp_path / "o"), "--quiet", *args], capsys)
    assert rc == 2 and err.startswith("rxlib synth: error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_cli_synth_into_foreign_folder(tmp_path, capsys):
    folder = _user_folder(tmp_path, {"truth/classes.csv": b"mine\n"})
    before = tree_hashes(folder)
    rc, _, err = _cli(["synth", "--out", str(folder), "--overwrite", "--quiet"], capsys)
    assert rc == 2 and f"{folder} holds files rxlib synth did not write (truth/classes.csv)" in err
    assert "Traceback" not in err and tree_hashes(folder) == before


def test_cli_synth_out_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    rc, _, err = _cli(["synth", "--out", str(tmp_path / "f"), "--quiet"], capsys)
    assert rc == 2 and "is not a folder" in err and err.count("\n") == 1


def test_cli_synth_folder_held_by_another_process(tmp_path, capsys):
    import subprocess
    import sys

    code = ("import sys, time; from rxlib.outputs import claim_output_folder; "
            "f = claim_output_folder(sys.argv[1], 'rxlib synth'); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "busy")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc, _, err = _cli(["synth", "--out", str(tmp_path / "busy"), "--quiet"], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and f"{tmp_path / 'busy'} is being written by another process" in err
    assert not (tmp_path / "busy" / "metadata.csv").exists()


def test_cli_synth_folder_being_written(tmp_path, capsys):
    with OutputFolder(tmp_path / "busy"):
        rc, _, err = _cli(["synth", "--out", str(tmp_path / "busy"), "--quiet"], capsys)
    assert rc == 2 and "is being written by another process" in err


@pytest.mark.parametrize("setup, words", [
    pytest.param(lambda root: shutil.rmtree(root), "no RxRx1 metadata found", id="cli-stats-no-data"),
    pytest.param(lambda root: (root / "metadata.csv").write_text((root / "metadata.csv").read_text().splitlines()[0] + "\n"),
                 "header only", id="cli-stats-header-only"),
    pytest.param(lambda root: (root / "metadata.csv").write_bytes(b""), "empty file", id="cli-stats-empty-metadata"),
    pytest.param(lambda root: (root / "train.csv").write_text("id_code\n"), "two metadata layouts", id="cli-stats-two-layouts"),
    pytest.param(lambda root: (root / "images/HEPG2-01/Plate1").rename(root / "images/HEPG2-01/plate1"),
                 "Plate1, found", id="cli-stats-wrong-case"),
    pytest.param(lambda root: write_metadata(root, _set("plate", 0, "1.5")(tiny_metadata(root))),
                 "plate='1.5'", id="cli-stats-float-plate"),
])
def test_cli_stats_user_errors(tiny_root, tmp_path, capsys, setup, words):
    setup(tiny_root)
    rc, _, err = _cli(["stats", "--data", str(tiny_root), "--out", str(tmp_path / "s"), "--quiet"], capsys)
    assert rc == 2 and err.startswith("rxlib stats: error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_stats_out_is_a_file(tiny_root, tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    rc, _, err = _cli(["stats", "--data", str(tiny_root), "--out", str(tmp_path / "f"), "--quiet"], capsys)
    assert rc == 2 and str(tmp_path / "f") in err and err.count("\n") == 1
    assert (tmp_path / "f").read_text() == "mine"


def test_cli_stats_lists_dropped_images(tiny_root, tmp_path, capsys):
    (tiny_root / W1).write_bytes(jpeg_bytes())
    rc, out, _ = _cli(["stats", "--data", str(tiny_root), "--out", str(tmp_path / "s"), "--quiet"], capsys)
    assert rc == 0
    assert "1 channel image(s) absent or unreadable" in out and f"{tiny_root / W1} (JPEG data" in out
