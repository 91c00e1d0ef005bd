"""Read RxRx1 metadata from any of the layouts users hold, into one normalised table.

Layouts:

- ``official``: the RxRx1 release from rxrx.ai: ``metadata.csv`` (``site_id, well_id, cell_type,
  dataset, experiment, plate, well, site, well_type, sirna, sirna_id``) and
  ``images/{experiment}/Plate{p}/{well}_s{site}_w{c}.png``. The synthetic RxRx1 uses this layout.
- ``kaggle-2019`` / ``kaggle-2023``: the Kaggle competition layout: ``train.csv``, ``test.csv``,
  ``train_controls.csv``, ``test_controls.csv`` (one row per well, both sites implied) and images
  under ``train/`` and ``test/``. 2019 labels are integers, 2023 labels strings (``sirna_250``,
  ``UNTREATED``); both become the same class ids (see :mod:`rxlib.data.labels`).

The normalised table has one row per imaging site:

============  ==============================================================
site_id       ``{experiment}_{plate}_{well}_{site}``
well_id       ``{experiment}_{plate}_{well}``
experiment    e.g. ``HEPG2-01``
plate         int, 1-4
well          e.g. ``B02``
site          int, 1 or 2
cell_type     one of :data:`rxlib.config.CELL_TYPES`
split         ``train`` or ``test``
well_type     ``treatment``, ``positive_control`` or ``negative_control``
label         class id in the 1139-class convention, -1 where unknown (Kaggle test treatments)
sirna         the siRNA name or number as the source wrote it
image_stem    path relative to the data root, without ``_w{c}.png``
============  ==============================================================

Validation: every CSV is checked at the boundary against one pandera ``DataFrameSchema`` per
layout and file kind (:func:`metadata_schema`), with ``lazy=True`` so that every failing row is
reported at once; the error (:class:`MetadataError`) names the file, and for each failed check the
CSV line, column and value. Before that: an empty file, bytes that are not UTF-8 (naming the line),
a malformed row (pandas' tokenizer message, with its line), duplicate column names, missing columns
and a header without rows are each an error naming the file. A folder holding two layouts
(``metadata.csv`` and Kaggle files) is an error naming both.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import CELL_TYPES, N_CLASSES_RXRX1, N_POSITIVE_CONTROLS_RXRX1, N_TREATMENTS_RXRX1
from ..io import RxRx1DataError
from .labels import kaggle2023_label_map

COLUMNS = ["site_id", "well_id", "experiment", "plate", "well", "site", "cell_type", "split",
           "well_type", "label", "sirna", "image_stem"]
OFFICIAL_COLUMNS = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well",
                    "site", "well_type", "sirna", "sirna_id"]
WELL_TYPES = ("treatment", "positive_control", "negative_control")
KAGGLE_FILES = ("train.csv", "train_controls.csv", "test.csv", "test_controls.csv")
LAYOUTS = ("official", "kaggle-2019", "kaggle-2023")
#: Plates per experiment in RxRx1 (a synthetic set declares its own ``n_plates`` in truth/params.json).
RXRX1_PLATES = 4
_WELL_RE = re.compile(r"^[A-P](0[1-9]|1[0-9]|2[0-4])$")
EXPERIMENT_PATTERN = r"^(" + "|".join(CELL_TYPES) + r")-\d{2}$"
_INT = r"\d+"
_MAX_SHOWN = 5


class MetadataError(RxRx1DataError):
    """A metadata file is unreadable or breaks its schema; the message names the file and, where one
    applies, the CSV line, column and value."""


@dataclass(frozen=True)
class ClassScheme:
    """How many treatment and positive-control classes a data set's labels use."""

    n_treatments: int = N_TREATMENTS_RXRX1
    n_positive_controls: int = N_POSITIVE_CONTROLS_RXRX1

    @property
    def n_classes(self) -> int:
        return self.n_treatments + self.n_positive_controls + 1

    @property
    def negative_control(self) -> int:
        return self.n_classes - 1

    def well_type(self, class_id: int) -> str:
        """``treatment``, ``positive_control`` or ``negative_control`` of a class id of this scheme."""
        if class_id < self.n_treatments:
            return "treatment"
        return "positive_control" if class_id < self.n_treatments + self.n_positive_controls else "negative_control"


# ---------------------------------------------------------------------------------------------
# Reading a CSV file safely


def read_csv_checked(path: Path, required: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a metadata CSV with every value as a string (as written), or raise naming the file.

    Errors: empty file; bytes that are not UTF-8 (with the line); duplicate or missing column
    names; a malformed row (pandas' tokenizer message, which names the line); no data rows. Blank
    lines are dropped, keeping the index so that row ``i`` is CSV line ``i + 2``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MetadataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not data.strip():
        raise MetadataError(f"{path}: empty file (no header, no rows)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise MetadataError(f"{path}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                            f"save the file as UTF-8") from exc
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])
    names = [h.strip() for h in header]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise MetadataError(f"{path}: line 1: duplicate column name(s) {dups}")
    if any(not n for n in names):
        raise MetadataError(f"{path}: line 1: empty column name in the header {header}")
    missing = [c for c in required if c not in names]
    if missing:
        raise MetadataError(f"{path}: missing column(s) {missing}; expected {list(required)}")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False,
                            skip_blank_lines=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise MetadataError(f"{path}: malformed CSV: {str(exc).strip()}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    blank = (frame == "").all(axis=1)
    frame = frame.loc[~blank]
    if frame.empty:
        raise MetadataError(f"{path}: header only, no data rows")
    return frame


# ---------------------------------------------------------------------------------------------
# Schemas


def _int_values(series: pd.Series) -> pd.Series:
    """Integer value of each cell written as a plain integer; NaN elsewhere."""
    return pd.to_numeric(series.where(series.str.fullmatch(_INT)), errors="coerce")


def _in_range(low: int, high: int):
    return lambda s: _int_values(s).between(low, high) | ~s.str.fullmatch(_INT)


def _integer_check(pa, column: str):
    return pa.Check(lambda s: s.str.fullmatch(_INT), error=f"{column} must be a non-negative integer "
                    f"(written without a decimal point)")


_UNKNOWN_CELL_TYPE = f"unknown cell type (known: {', '.join(CELL_TYPES)})"


class _SchemaParts:
    """Declares the columns and frame checks of a metadata schema, recording for each check message
    the columns a failing row is shown with."""

    def __init__(self, pa) -> None:
        self.pa = pa
        self.shown: dict[str, list[str]] = {}

    def col(self, name: str, *checks):
        """A non-null column of string values with ``checks`` (a failing row shows this column)."""
        for check in checks:
            self.shown.setdefault(check.error, [name])
        return self.pa.Column(None, list(checks), nullable=False, coerce=False)

    def frame_check(self, fn, error: str, columns: list[str]):
        """A check across columns (a failing row shows ``columns``)."""
        self.shown[error] = columns
        return self.pa.Check(fn, error=error)


def metadata_schema(kind: str, *, max_plate: int = RXRX1_PLATES, scheme: ClassScheme | None = None):
    """The pandera schema of one metadata file kind, values read as strings.

    Args:
        kind: ``official`` (metadata.csv), ``kaggle-2019`` or ``kaggle-2023`` plus ``:train``
            (train.csv), ``:controls`` (*_controls.csv) or ``:test`` (test.csv).
        max_plate: highest plate number (4 for RxRx1; a synthetic set's ``n_plates``).
        scheme: the class scheme (RxRx1's by default).

    Returns:
        ``(schema, check_columns)``: the DataFrameSchema, and for each check message the columns a
        failing row is shown with.
    """
    import pandera.pandas as pa

    parts = _SchemaParts(pa)
    location = _location_columns(parts, max_plate)
    layout, _, part = kind.partition(":")
    if layout == "official":
        columns, checks = _official_columns(parts, location, scheme or ClassScheme())
        unique = "site_id"
    else:
        columns, checks = _kaggle_columns(parts, location, layout, part)
        unique = "id_code"
    return pa.DataFrameSchema(columns, checks=checks, unique=[unique], strict=False), parts.shown


def _location_columns(parts: _SchemaParts, max_plate: int) -> dict:
    """Columns every layout has: experiment, plate (1..``max_plate``) and well."""
    pa, col = parts.pa, parts.col
    return {
        "experiment": col("experiment", pa.Check(lambda s: s.str.fullmatch(r"[^-]+-\d{2}"),
                                                 error=f"experiment must match {EXPERIMENT_PATTERN}")),
        "plate": col("plate", _integer_check(pa, "plate"),
                     pa.Check(_in_range(1, max_plate), error=f"plate must be in 1..{max_plate}")),
        "well": col("well", pa.Check(lambda s: s.str.fullmatch(_WELL_RE.pattern[1:-1]),
                                     error="not a well of a 384-well plate (A01..P24)")),
    }


def _official_columns(parts: _SchemaParts, location: dict, scheme: ClassScheme) -> tuple[dict, list]:
    """Columns and cross-column checks of the official ``metadata.csv``."""
    pa, col, frame_check = parts.pa, parts.col, parts.frame_check
    n = scheme.n_classes
    columns = {
        "cell_type": col("cell_type", pa.Check.isin(CELL_TYPES, error=_UNKNOWN_CELL_TYPE)),
        **location,
        "site_id": col("site_id", pa.Check(lambda s: s.str.len() > 0, error="site_id is empty")),
        "well_id": col("well_id", pa.Check(lambda s: s.str.len() > 0, error="well_id is empty")),
        "dataset": col("dataset", pa.Check.isin(["train", "test"], error="dataset must be train or test")),
        "site": col("site", _integer_check(pa, "site"),
                    pa.Check(_in_range(1, 2), error="site must be 1 or 2")),
        "well_type": col("well_type", pa.Check.isin(WELL_TYPES, error=f"well type must be one of {WELL_TYPES}")),
        "sirna": col("sirna", pa.Check(lambda s: s.str.len() > 0, error="sirna is empty")),
        "sirna_id": col("sirna_id", _integer_check(pa, "sirna_id"),
                        pa.Check(_in_range(0, n - 1), error=f"class id outside 0..{n - 1}")),
    }
    checks = [
        frame_check(lambda f: f["experiment"].str.split("-").str[0] == f["cell_type"],
                    "cell type disagrees with the experiment's prefix", ["cell_type", "experiment"]),
        frame_check(lambda f: f["well_id"] == f["experiment"] + "_" + f["plate"] + "_" + f["well"],
                    "well_id is not {experiment}_{plate}_{well}", ["well_id", "experiment", "plate", "well"]),
        frame_check(lambda f: f["site_id"] == f["well_id"] + "_" + f["site"],
                    "site_id is not {well_id}_{site}", ["site_id", "well_id", "site"]),
        frame_check(lambda f: _well_type_agrees(f, "sirna_id", scheme),
                    "well type disagrees with the class id", ["well_type", "sirna_id"]),
        frame_check(lambda f: _one_to_one(f["sirna"], f["sirna_id"]),
                    "sirna and sirna_id do not map one to one", ["sirna", "sirna_id"]),
    ]
    return columns, checks


def _kaggle_columns(parts: _SchemaParts, location: dict, layout: str, part: str) -> tuple[dict, list]:
    """Columns and cross-column checks of a Kaggle file (``layout`` 2019 or 2023; ``part`` train,
    controls or test)."""
    pa, col, frame_check = parts.pa, parts.col, parts.frame_check
    columns = {"cell_type": col("cell_type", pa.Check.isin(CELL_TYPES, error=_UNKNOWN_CELL_TYPE)), **location,
               "id_code": col("id_code", pa.Check(lambda s: s.str.len() > 0, error="id_code is empty"))}
    checks = [frame_check(lambda f: f["id_code"] == f["experiment"] + "_" + f["plate"] + "_" + f["well"],
                          "id_code is not {experiment}_{plate}_{well}", ["id_code", "experiment", "plate", "well"])]
    if part in ("train", "controls"):
        if layout == "kaggle-2019":
            columns["sirna"] = col("sirna", _integer_check(pa, "sirna"),
                                   pa.Check(_in_range(0, N_CLASSES_RXRX1 - 1),
                                            error=f"class id outside 0..{N_CLASSES_RXRX1 - 1}"))
        else:
            names = set(kaggle2023_label_map())
            columns["sirna"] = col("sirna", pa.Check(lambda s: s.isin(names),
                                                     error="siRNA name not in the RxRx1 label table"))
        if part == "controls":
            columns["well_type"] = col("well_type", pa.Check.isin(WELL_TYPES,
                                                                  error=f"well type must be one of {WELL_TYPES}"))
        checks.append(frame_check(lambda f: _well_type_agrees(f, "sirna", ClassScheme(), layout),
                                  "well type disagrees with the class id",
                                  ["well_type", "sirna"] if part == "controls" else ["sirna"]))
    return columns, checks


def _labels(values: pd.Series, layout: str) -> pd.Series:
    if layout == "kaggle-2023":
        return values.map(kaggle2023_label_map()).astype(float)
    return _int_values(values)


def _well_type_agrees(frame: pd.DataFrame, column: str, scheme: ClassScheme, layout: str = "official") -> pd.Series:
    labels = _labels(frame[column], layout)
    wanted = frame["well_type"] if "well_type" in frame else pd.Series("treatment", index=frame.index)
    known = labels.notna() & labels.between(0, scheme.n_classes - 1)
    implied = labels[known].astype(int).map(scheme.well_type)
    out = pd.Series(True, index=frame.index)
    out[known] = implied == wanted[known]
    return out


def _one_to_one(a: pd.Series, b: pd.Series) -> pd.Series:
    pairs = pd.DataFrame({"a": a, "b": b})
    return (pairs.groupby("a")["b"].transform("nunique") == 1) & (pairs.groupby("b")["a"].transform("nunique") == 1)


def validate_metadata(path: Path, frame: pd.DataFrame, kind: str, **kwargs) -> None:
    """Check ``frame`` (read by :func:`read_csv_checked`) against :func:`metadata_schema`; raise
    :class:`MetadataError` listing, per failed check, the CSV lines, columns and values (all at once)."""
    import pandera.pandas as pa

    schema, shown = metadata_schema(kind, **kwargs)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise MetadataError(_describe_failures(path, frame, exc.failure_cases, shown, list(schema.columns))) from None


def _describe_failures(path: Path, frame: pd.DataFrame, cases: pd.DataFrame, shown: dict[str, list[str]],
                       order: list[str]) -> str:
    cases = cases.copy()
    unique = cases["check"].astype(str).str.contains("uniqueness")
    cases.loc[unique, "check"] = cases.loc[unique, "column"].astype(str) + " listed more than once"
    for i in cases.index[unique]:
        shown[cases.at[i, "check"]] = [cases.at[i, "column"]]
    rank = {check: n for n, check in enumerate(shown)}
    groups = []
    total = 0
    for check, part in sorted(cases.groupby("check", sort=False), key=lambda kv: rank.get(kv[0], len(rank))):
        index = [i for i in pd.unique(part["index"]) if i is not None and not pd.isna(i)]
        if not index:  # a check with no row (should not happen: missing columns are caught before)
            groups.append(f"{check}: {', '.join(map(str, part['failure_case'].unique()[:_MAX_SHOWN]))}")
            total += 1
            continue
        cols = [c for c in shown.get(check, [part["column"].iloc[0]]) if c in frame.columns]
        lines = []
        for i in sorted(index, key=int)[:_MAX_SHOWN]:
            values = ", ".join(f"{c}={frame.at[i, c]!r}" for c in cols)
            lines.append(f"line {int(i) + 2}: {values}")
        more = f" (and {len(index) - _MAX_SHOWN} more)" if len(index) > _MAX_SHOWN else ""
        groups.append(f"{check}: " + "; ".join(lines) + more)
        total += len(index)
    return f"{path}: " + " | ".join(groups) + f" [{total} failure(s) in all]"


# ---------------------------------------------------------------------------------------------
# Layouts


def detect_layout(root: str | Path) -> str:
    """Return ``official``, ``kaggle-2019`` or ``kaggle-2023`` for a data root.

    Raises:
        RxRx1DataError: if the folder holds none of the known metadata files, or two layouts.
    """
    root = Path(root)
    official = root / "metadata.csv"
    present = [f for f in KAGGLE_FILES if (root / f).is_file()]
    if official.is_file():
        if present:
            raise MetadataError(
                f"{root}: holds two metadata layouts: the official {official.name} and Kaggle's "
                f"{', '.join(present)}; keep one layout per folder (or pass layout=...)")
        return "official"
    if not present:
        raise RxRx1DataError(
            f"{root}: no RxRx1 metadata found (expected metadata.csv, or Kaggle's {', '.join(KAGGLE_FILES)})")
    labelled = [f for f in present if f != "test.csv"]
    if not labelled:
        return "kaggle-2023"  # only test.csv: no labels to tell the releases apart
    frame = read_csv_checked(root / labelled[0], required=["sirna"])
    # 2023 names (sirna_250, UNTREATED) versus 2019 class numbers; a stray bad value in either
    # is then reported by that layout's schema, naming its line
    return "kaggle-2023" if frame["sirna"].isin(set(kaggle2023_label_map())).any() else "kaggle-2019"


def class_scheme(root: str | Path) -> ClassScheme:
    """The class scheme of a data root: the synthetic set's from ``truth/classes.csv``; else, for an
    official-layout ``metadata.csv`` whose negative-control wells carry one class id other than RxRx1's
    1138 (a synthetic set whose ``truth/`` was removed), the scheme its control wells imply (negative
    control = the last id, positive controls just before it); else RxRx1's."""
    classes = Path(root) / "truth" / "classes.csv"
    if classes.is_file():
        kinds = read_csv_checked(classes, required=["kind"])["kind"]
        return ClassScheme(int((kinds == "treatment").sum()), int((kinds == "positive_control").sum()))
    meta = Path(root) / "metadata.csv"
    if meta.is_file():
        try:
            wells = pd.read_csv(meta, usecols=["well_type", "sirna_id"])
        except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError):
            return ClassScheme()  # the schema check of read_metadata names what is wrong
        negative = pd.to_numeric(wells.loc[wells["well_type"] == "negative_control", "sirna_id"], errors="coerce").dropna()
        positive = pd.to_numeric(wells.loc[wells["well_type"] == "positive_control", "sirna_id"], errors="coerce").dropna()
        if negative.nunique() == 1:
            neg = int(negative.iloc[0])
            # treatments are 0..first positive control - 1 (not every positive-control id need be present)
            n_treatments = int(positive.min()) if len(positive) and positive.min() < neg else neg
            if neg != ClassScheme().negative_control and n_treatments >= 1:
                return ClassScheme(n_treatments, neg - n_treatments)
    return ClassScheme()


def declared_setting(root: str | Path, key: str, default):
    """Setting ``key`` of the ``config`` a synthetic set declares in truth/params.json; ``default`` for a
    data set without that file (RxRx1).

    Raises:
        MetadataError: the file is unreadable or its config lacks ``key``.
    """
    params = Path(root) / "truth" / "params.json"
    if not params.is_file():
        return default
    try:
        return json.loads(params.read_text())["config"][key]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise MetadataError(f"{params}: unreadable or without config.{key} ({exc})") from exc


def declared_plates(root: str | Path) -> int:
    """Plates per experiment: a synthetic set's ``n_plates`` (truth/params.json), else RxRx1's 4."""
    value = declared_setting(root, "n_plates", RXRX1_PLATES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        params = Path(root) / "truth" / "params.json"
        raise MetadataError(f"{params}: config.n_plates must be a positive integer, got {value!r}")
    return value


def read_metadata(root: str | Path, layout: str | None = None) -> pd.DataFrame:
    """Read the metadata of a data root into the normalised per-site table (see module docstring).

    Raises:
        MetadataError (an RxRx1DataError): naming the file and, per failed check, the CSV line,
            column and value: see :func:`metadata_schema`; also two layouts in one folder, an empty
            or header-only file, bad encoding, malformed rows, and a site listed more than once.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout == "official":
        table = _read_official(root)
    elif layout in ("kaggle-2019", "kaggle-2023"):
        table = _read_kaggle(root, layout)
    else:
        raise RxRx1DataError(f"unknown layout {layout!r}; expected official, kaggle-2019 or kaggle-2023")
    dup = table["site_id"].duplicated(keep=False)
    if dup.any():
        raise MetadataError(f"{root}: site(s) listed more than once: {sorted(set(table.loc[dup, 'site_id']))[:5]}")
    table = table[COLUMNS].reset_index(drop=True)
    table.attrs["layout"] = layout
    table.attrs["root"] = str(root)
    return table


def _read_official(root: Path) -> pd.DataFrame:
    path = root / "metadata.csv"
    frame = read_csv_checked(path, required=OFFICIAL_COLUMNS)
    validate_metadata(path, frame, "official", max_plate=declared_plates(root), scheme=class_scheme(root))
    out = frame.rename(columns={"dataset": "split"}).copy()
    out["plate"] = out["plate"].astype(int)
    out["site"] = out["site"].astype(int)
    out["label"] = out["sirna_id"].astype(int)
    out["image_stem"] = [f"images/{e}/Plate{p}/{w}_s{s}" for e, p, w, s in
                         zip(out["experiment"], out["plate"], out["well"], out["site"])]
    return out


def _read_kaggle(root: Path, layout: str) -> pd.DataFrame:
    label_map = kaggle2023_label_map() if layout == "kaggle-2023" else None
    parts = []
    for name in KAGGLE_FILES:
        path = root / name
        if not path.is_file():
            continue
        part = "test" if name == "test.csv" else ("controls" if "controls" in name else "train")
        needed = ["id_code", "experiment", "plate", "well"] + ([] if part == "test" else ["sirna"]) + (
            ["well_type"] if part == "controls" else [])
        frame = read_csv_checked(path, required=needed)
        frame.insert(0, "cell_type", frame["experiment"].str.split("-").str[0])
        validate_metadata(path, frame, f"{layout}:{part}")
        if part == "test":
            frame["sirna"] = pd.NA
            frame["label"] = -1
        else:
            frame["label"] = frame["sirna"].map(label_map) if label_map else frame["sirna"].astype(int)
        if "well_type" not in frame.columns:
            frame["well_type"] = "treatment"
        frame["label"] = frame["label"].astype(int)
        frame["split"] = "train" if name.startswith("train") else "test"
        frame["sirna"] = frame["sirna"].astype("string")
        parts.append(frame)
    wells = pd.concat(parts, ignore_index=True)
    wells["plate"] = wells["plate"].astype(int)
    wells["well_id"] = wells["experiment"] + "_" + wells["plate"].astype(str) + "_" + wells["well"]
    sites = wells.loc[wells.index.repeat(2)].copy()
    sites["site"] = [1, 2] * len(wells)
    sites["site_id"] = sites["well_id"] + "_" + sites["site"].astype(str)
    sites["image_stem"] = [f"{sp}/{e}/Plate{p}/{w}_s{s}" for sp, e, p, w, s in
                           zip(sites["split"], sites["experiment"], sites["plate"], sites["well"], sites["site"])]
    return sites
