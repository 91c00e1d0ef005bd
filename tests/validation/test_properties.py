"""Property-based tests: generated metadata tables and image files through every reader.

Every outcome is either a correct load (checked against what was written) or a named error: an
``RxRx1DataError`` subclass whose message names the file. Small ``max_examples`` keep this fast.
"""
from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rxlib.data.images import load_site_stem
from rxlib.data.labels import kaggle2023_label_map
from rxlib.data.metadata import MetadataError, read_metadata
from rxlib.data.scan import scan
from rxlib.data.stats import write_stats
from rxlib.io import RxRx1DataError, read_png

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STEM = "images/HEPG2-01/Plate1/B03_s1"

# -- images ------------------------------------------------------------------------------------

MODES = ["L", "L", "L", "I;16", "1", "P", "RGB", "LA", "RGBA"]


@st.composite
def image_files(draw):
    """(bytes, the uint8 array a correct load must give or None)."""
    mode = draw(st.sampled_from(MODES))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    grey = rng.integers(0, 256, (height, width), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    else:
        image = Image.fromarray(grey).convert(mode) if mode != "L" else Image.fromarray(grey)
    fmt = draw(st.sampled_from(["PNG", "PNG", "PNG", "JPEG"])) if mode in ("L", "RGB") else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    data = buffer.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data) - 1)))
    if cut is not None:
        data = data[:cut]
    return data, (grey if mode == "L" and fmt == "PNG" else None)


def _check_outcome(call, path: Path, expected: np.ndarray | None):
    try:
        result = call()
    except RxRx1DataError as exc:
        assert str(path) in str(exc)
        return None
    assert expected is not None, f"{path}: loaded, but it is not an 8-bit grayscale PNG"
    return result


@SETTINGS
@given(image=image_files())
def test_read_png_loads_correctly_or_names_the_file(tmp_path, image):
    data, expected = image
    path = tmp_path / "w1.png"
    path.write_bytes(data)
    result = _check_outcome(lambda: read_png(path), path, expected)
    if result is not None:
        np.testing.assert_array_equal(result, expected)


@settings(SETTINGS, max_examples=15)
@given(image=image_files(), channel=st.integers(1, 6))
def test_site_scan_and_stats_load_correctly_or_name_the_file(tiny_root, image, channel):
    data, expected = image
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(tiny_root, root)
        path = root / f"{STEM}_w{channel}.png"
        path.write_bytes(data)
        same_size = expected is not None and expected.shape == (16, 16)
        stack = _check_outcome(lambda: load_site_stem(root, STEM), path, expected if same_size else None)
        if stack is not None:
            np.testing.assert_array_equal(stack[channel - 1], expected)
        table = read_metadata(root)
        problems = scan(root, table, progress=False)
        # every problem names its file; the one changed file is the only one that can be a problem
        assert set(problems["path"]) <= {str(path)}
        assert all(str(path) in m for m in problems["message"])
        assert problems.empty == same_size
        written = write_stats(root, Path(tmp) / "stats", progress=False)
        dropped = pd.read_csv(written["dropped_images"])
        assert written.n_dropped == len(dropped) == (0 if expected is not None else 1)
        assert dropped["path"].tolist() == ([] if expected is not None else [str(path)])
        intensities = pd.read_csv(written["intensities"])
        assert len(intensities) == 12 * 6 - written.n_dropped


# -- metadata ----------------------------------------------------------------------------------

VALUES = st.one_of(
    st.integers(-3, 1200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: f"{v}"),
    st.sampled_from(["", " ", "1.0", "1e3", "B02", "HELA", "HUVEC-01", "HEPG2-1", "treatment",
                     "negative_control", "train", "UNTREATED", "sirna_1", "Z99", "A01", "P24", "x,y", '"q"',
                     "é", "\u0000", "nan", "None", "NA", "true"]),
    st.text(min_size=0, max_size=6),
)


@st.composite
def table_edits(draw, columns: list[str], n_rows: int):
    edits = draw(st.lists(st.tuples(st.sampled_from(columns), st.integers(0, n_rows - 1), VALUES),
                          min_size=0, max_size=3))
    structural = draw(st.sampled_from([None, None, None, "drop", "duplicate-row", "header-only", "empty"]))
    return edits, structural, draw(st.sampled_from(columns))


def _apply(frame: pd.DataFrame, edits, structural, column) -> pd.DataFrame:
    frame = frame.copy()
    for col, row, value in edits:
        frame.loc[frame.index[row], col] = value
    if structural == "drop":
        frame = frame.drop(columns=column)
    elif structural == "duplicate-row":
        frame = pd.concat([frame, frame.iloc[:1]])
    elif structural == "header-only":
        frame = frame.head(0)
    return frame


def _write(path: Path, frame: pd.DataFrame, structural) -> None:
    if structural == "empty":
        path.write_bytes(b"")
    else:
        frame.to_csv(path, index=False)


def _check_table(loaded: pd.DataFrame, source: pd.DataFrame, id_column: str) -> None:
    """A correct load: integer columns hold exactly the integers written, ids unchanged."""
    for col in ("plate",):
        assert source[col].astype(str).str.fullmatch(r"\d+").all()
        assert set(loaded[col]) == set(source[col].astype(int))
    assert set(loaded["well"]) == set(source["well"])
    assert loaded["site_id"].is_unique


@SETTINGS
@given(data=st.data())
def test_official_metadata_loads_correctly_or_names_the_file(tiny_root, data):
    base = pd.read_csv(tiny_root / "metadata.csv", dtype=str, keep_default_na=False)
    edits, structural, column = data.draw(table_edits(list(base.columns), len(base)))
    frame = _apply(base, edits, structural, column)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "metadata.csv"
        _write(path, frame, structural)
        try:
            table = read_metadata(root)
        except MetadataError as exc:
            assert str(path) in str(exc)
            return
        source = pd.read_csv(path, dtype=str, keep_default_na=False)
        _check_table(table, source, "site_id")
        assert source["site"].str.fullmatch(r"[12]").all() and source["sirna_id"].str.fullmatch(r"\d+").all()
        assert table["label"].tolist() == source["sirna_id"].astype(int).tolist()


def _kaggle_frames(layout: str) -> dict[str, pd.DataFrame]:
    names = {v: k for k, v in kaggle2023_label_map().items()}
    label = (lambda i: str(i)) if layout == "kaggle-2019" else (lambda i: names[i])
    train = pd.DataFrame({"id_code": [f"HEPG2-01_1_B0{w}" for w in (3, 4, 5)], "experiment": "HEPG2-01",
                          "plate": "1", "well": ["B03", "B04", "B05"], "sirna": [label(i) for i in (0, 5, 7)]})
    controls = pd.DataFrame({"id_code": ["HEPG2-01_1_B02", "HEPG2-01_1_C03"], "experiment": "HEPG2-01", "plate": "1",
                             "well": ["B02", "C03"], "sirna": [label(1138), label(1110)],
                             "well_type": ["negative_control", "positive_control"]})
    test = pd.DataFrame({"id_code": ["U2OS-04_2_D10"], "experiment": "U2OS-04", "plate": "2", "well": ["D10"]})
    return {"train.csv": train, "train_controls.csv": controls, "test.csv": test}


@SETTINGS
@given(data=st.data(), layout=st.sampled_from(["kaggle-2019", "kaggle-2023"]))
def test_kaggle_metadata_loads_correctly_or_names_the_file(data, layout):
    frames = _kaggle_frames(layout)
    name = data.draw(st.sampled_from(sorted(frames)))
    base = frames[name]
    edits, structural, column = data.draw(table_edits(list(base.columns), len(base)))
    frames[name] = _apply(base, edits, structural, column)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for file, frame in frames.items():
            _write(root / file, frame, structural if file == name else None)
        try:
            table = read_metadata(root, layout=layout)
        except MetadataError as exc:
            assert any(str(root / f) in str(exc) for f in frames) or str(root) in str(exc)
            return
        source = pd.concat([pd.read_csv(root / f, dtype=str, keep_default_na=False) for f in frames])
        _check_table(table, source, "id_code")
        assert (source["id_code"] == source["experiment"] + "_" + source["plate"] + "_" + source["well"]).all()
        assert len(table) == 2 * len(source)


def test_unnamed_errors_never_escape(tiny_root):
    """The exceptions the readers raise for bad input are all RxRx1DataError subclasses."""
    assert issubclass(MetadataError, RxRx1DataError)
    with pytest.raises(RxRx1DataError):
        read_png(tiny_root / "nope.png")
