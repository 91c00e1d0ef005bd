"""Data set statistics: the paper's Table 1, the split summary, per-image intensities (Figure 3),
normalisation statistics and nuclei per field."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import N_CHANNELS
from ..io import RxRx1DataError, read_png
from ..outputs import claim_output_folder
from ..segmentation import count_nuclei
from .images import channel_paths, wrong_case_sites

#: The paper's Table 1 as printed (Sharma & Krishnamurthi 2022, section 2.3). Its S_32 and S_33
#: (31 and 1065) sum with S_29 and S_31 to 1,100 classes, not the 1,108 of RxRx1.
PAPER_TABLE1 = {29: 2, 31: 2, 32: 31, 33: 1065}

#: Treatment classes (siRNAs) of RxRx1, and the sum of the paper's printed Table 1.
RXRX1_CLASSES, PAPER_TABLE1_CLASSES = 1108, 1100


def class_sets(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1: how many treatment classes have exactly ``x`` training samples.

    A sample is a training well (``id_code`` in Kaggle's ``train.csv``), as in the paper.
    Returns columns ``samples_per_class, n_classes``, sorted by ``samples_per_class``.
    """
    wells = table[(table["split"] == "train") & (table["well_type"] == "treatment") & (table["label"] >= 0)]
    per_class = wells.drop_duplicates("well_id").groupby("label").size()
    sets = per_class.value_counts().sort_index()
    return pd.DataFrame({"samples_per_class": sets.index.astype(int), "n_classes": sets.to_numpy(dtype=int)})


def samples_per_class(table: pd.DataFrame) -> pd.Series:
    """Training wells per treatment class (the data behind Figure 2), indexed by class id."""
    wells = table[(table["split"] == "train") & (table["well_type"] == "treatment") & (table["label"] >= 0)]
    return wells.drop_duplicates("well_id").groupby("label").size().rename("samples")


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Experiments, plates, wells, sites and classes per cell type, split and well type.

    Rows with ``cell_type == 'all'`` and/or ``well_type == 'all'`` aggregate; e.g. the paper's
    N_train is ``wells`` at (all, train, treatment).
    """
    rows = []
    frames = {"all": table, **{c: f for c, f in table.groupby("cell_type")}}
    for cell_type, frame in frames.items():
        for split, by_split in frame.groupby("split"):
            kinds = {"all": by_split, **{w: f for w, f in by_split.groupby("well_type")}}
            for well_type, part in kinds.items():
                labelled = part[part["label"] >= 0]
                rows.append({
                    "cell_type": cell_type, "split": split, "well_type": well_type,
                    "experiments": part["experiment"].nunique(),
                    "plates": part[["experiment", "plate"]].drop_duplicates().shape[0],
                    "wells": part["well_id"].nunique(), "sites": len(part),
                    "classes": labelled["label"].nunique(),
                })
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame) -> dict[str, int]:
    """The paper's section 2.3 numbers: N_train, N_test (treatment wells), N_total, N_class."""
    treat = table[table["well_type"] == "treatment"]
    n_train = treat.loc[treat["split"] == "train", "well_id"].nunique()
    n_test = treat.loc[treat["split"] == "test", "well_id"].nunique()
    n_class = treat.loc[(treat["split"] == "train") & (treat["label"] >= 0), "label"].nunique()
    return {"N_train": n_train, "N_test": n_test, "N_total": n_train + n_test,
            "N_gray_scale": (n_train + n_test) * N_CHANNELS, "N_class": n_class}


#: Sites whose nuclei :func:`image_intensities` counts at most: segmenting a site costs ~20 ms against ~5 ms
#: for reading its six channels, and a few hundred sites pin down the median nuclei per field.
MAX_NUCLEI_SITES = 300


def image_intensities(root: str | Path, table: pd.DataFrame, *, progress: bool = True,
                      count_nuclei_w1: bool = False,
                      max_nuclei_sites: int | None = MAX_NUCLEI_SITES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and standard deviation of every readable channel image (Figure 3, normalisation).

    Each channel is read on its own, so a site missing w5/w6 still gives w1-w4. Unreadable or
    absent files are not skipped silently: they are returned in the second table
    (site_id, channel, path, error).

    Args:
        count_nuclei_w1: count the nuclei of the w1 (Hoechst) images (:func:`rxlib.segmentation.count_nuclei`).
        max_nuclei_sites: count them on at most this many sites, evenly spread over ``table``'s order
            (every k-th site); the others get NaN. None counts every site.

    Returns:
        (intensities, problems): intensities has one row per site and channel with
        site_id, experiment, plate, well, cell_type, split, well_type, label, channel, mean, std,
        height, width, and n_nuclei (w1 rows, if ``count_nuclei_w1``).
    """
    rows, problems = [], []
    keep = ["site_id", "experiment", "plate", "well", "cell_type", "split", "well_type", "label"]
    stride = 1 if not max_nuclei_sites else max(1, -(-len(table) // int(max_nuclei_sites)))
    for position, record in enumerate(tqdm(table[keep + ["image_stem"]].to_dict("records"), desc="intensities",
                                           unit="site", disable=not progress)):
        for channel, path in enumerate(channel_paths(root, record["image_stem"]), start=1):
            try:
                image = read_png(path)
            except RxRx1DataError as exc:
                problems.append({"site_id": record["site_id"], "channel": channel, "path": str(path),
                                 "error": str(exc)})
                continue
            row = {k: record[k] for k in keep}
            row.update(channel=channel, mean=float(image.mean()), std=float(image.std()),
                       height=image.shape[0], width=image.shape[1])
            if count_nuclei_w1 and channel == 1:
                row["n_nuclei"] = count_nuclei(image) if position % stride == 0 else np.nan
            rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(problems, columns=["site_id", "channel", "path", "error"])


def normalisation_stats(intensities: pd.DataFrame, by: str = "experiment") -> pd.DataFrame:
    """Per-channel mean and standard deviation of all pixels of each experiment or plate.

    Pools the per-image statistics exactly (images of one data set have equal size):
    mean = mean of image means; var = mean of (std^2 + mean^2) - mean^2.
    Returns columns group, channel, mean, std, n_images; ``attrs['by']`` records the grouping.
    """
    if by not in ("experiment", "plate"):
        raise ValueError(f"by={by!r}; expected 'experiment' or 'plate'")
    frame = intensities.copy()
    frame["group"] = frame["experiment"] if by == "experiment" else (
        frame["experiment"] + "_" + frame["plate"].astype(str))
    frame["second_moment"] = frame["std"] ** 2 + frame["mean"] ** 2
    grouped = frame.groupby(["group", "channel"])
    out = grouped.agg(mean=("mean", "mean"), second_moment=("second_moment", "mean"),
                      n_images=("mean", "size")).reset_index()
    out["std"] = np.sqrt(np.maximum(out.pop("second_moment") - out["mean"] ** 2, 0.0))
    out.attrs["by"] = by
    return out[["group", "channel", "mean", "std", "n_images"]]


def sites_with_images(root: str | Path, table: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows of ``table`` that have at least one channel file under ``root``
    (:func:`rxlib.data.availability.imaged_sites`: one folder listing per plate, not six stats per row)."""
    from .availability import imaged_sites

    return imaged_sites(root, table)


def write_stats(root: str | Path, out: str | Path, *, scan_images: bool = False, intensities: bool = True,
                progress: bool = True) -> "WrittenFiles":
    """Compute and write the data set statistics of ``root`` into ``out`` (the ``rxlib stats`` command).

    Always writes ``class_sets.csv`` (Table 1), ``summary.csv`` and ``headline.csv``. With
    ``intensities``, for the sites that have images: ``intensities.csv`` (per image mean/std and
    nuclei count), ``norm_experiment.csv`` and ``norm_plate.csv``, and ``dropped_images.csv``: every
    channel image of those sites that is absent or unreadable and so is not in the intensities (one
    row each, with the error; their number is ``written.n_dropped``). With ``scan_images``: ``problems.csv``
    (every problem found, one row each) and ``problem_summary.csv``.

    Raises:
        RxRx1DataError: bad metadata (naming file, line, column, value); or sites without images
            whose folder or file exists under another letter case (``plate1/`` for ``Plate1/``),
            naming the expected path.
    """
    from .metadata import read_metadata

    root, out = Path(root), Path(out)
    table = read_metadata(root)
    with claim_output_folder(out, "rxlib stats") as folder:
        folder.refuse_unrecorded(STATS_FILES)  # a user's file of the same name is never overwritten
        written = _write_stats(root, out, folder, table, scan_images, intensities, progress)
        folder.finalise()
    return written


#: Files ``rxlib stats`` may write into its output folder.
STATS_FILES = ("class_sets.csv", "summary.csv", "headline.csv", "problems.csv", "problem_summary.csv",
               "dropped_images.csv", "intensities.csv", "norm_experiment.csv", "norm_plate.csv")


def _write_stats(root: Path, out: Path, folder, table: pd.DataFrame, scan_images: bool, intensities: bool,
                 progress: bool) -> "WrittenFiles":
    from ..io import write_csv
    from .scan import scan, summarise_problems

    def put(name: str, frame: pd.DataFrame) -> Path:
        folder.record(name)
        return write_csv(out / name, frame)

    written = WrittenFiles({
        "class_sets": put("class_sets.csv", class_sets(table)),
        "summary": put("summary.csv", summary(table)),
        "headline": put("headline.csv", pd.DataFrame([headline(table)])),
    })
    if scan_images:
        problems = scan(root, table, progress=progress)
        written["problems"] = put("problems.csv", problems)
        written["problem_summary"] = put("problem_summary.csv", summarise_problems(problems))
    if intensities:
        has_images = sites_with_images(root, table)
        mistaken = wrong_case_sites(root, table.loc[~has_images, "image_stem"])
        if mistaken:
            raise RxRx1DataError(f"{root}: images not found where the metadata puts them: {mistaken[0]}"
                                 + (f" (and {len(mistaken) - 1} more such names)" if len(mistaken) > 1 else ""))
        imaged = table[has_images]
        if len(imaged):
            values, dropped = image_intensities(root, imaged, progress=progress, count_nuclei_w1=True)
            written["dropped_images"] = put("dropped_images.csv", dropped)
            written.n_dropped = len(dropped)
            if values.empty:
                raise RxRx1DataError(f"{root}: none of the {len(dropped)} channel images of the sites with images "
                                     f"could be read; each is listed with its error in {out / 'dropped_images.csv'}"
                                     f" (first: {dropped['error'].iloc[0]})")
            written["intensities"] = put("intensities.csv", values)
            for by in ("experiment", "plate"):
                written[f"norm_{by}"] = put(f"norm_{by}.csv", normalisation_stats(values, by))
    return written


class WrittenFiles(dict):
    """``name -> path`` of the files :func:`write_stats` wrote, and ``n_dropped``: channel images of
    sites with images left out of the intensities (listed in ``dropped_images.csv``)."""

    n_dropped: int = 0


def compare_class_sets(sources: dict[str, dict[int, int] | pd.DataFrame]) -> pd.DataFrame:
    """Table 1 side by side: one column of class counts per source (a class_sets table or a dict
    samples_per_class -> n_classes), one row per samples-per-class value, and a total row."""
    columns = {}
    for name, sets in sources.items():
        if isinstance(sets, pd.DataFrame):
            sets = dict(zip(sets["samples_per_class"], sets["n_classes"]))
        columns[name] = pd.Series(sets, dtype="Int64")
    frame = pd.DataFrame(columns).sort_index()
    frame.index.name = "samples_per_class"
    frame.loc["total"] = frame.sum()
    return frame.reset_index()


def sample_sites(table: pd.DataFrame, max_sites: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_sites`` rows, drawn evenly over experiments (all rows if there are fewer)."""
    if len(table) <= max_sites:
        return table
    per_experiment = max(1, max_sites // table["experiment"].nunique())
    shuffled = table.sample(frac=1.0, random_state=seed)
    return shuffled.groupby("experiment", sort=False).head(per_experiment).sort_index()


def realism_summary(real: pd.DataFrame, synthetic: pd.DataFrame, reference_side: int = 512) -> pd.DataFrame:
    """Median per-channel mean intensity and nuclei per ``reference_side``² field, per cell type and
    source, with the synthetic/real ratio where both exist."""
    rows = []
    for source, frame in (("real", real), ("synthetic", synthetic)):
        if frame.empty:
            continue
        for cell_type, part in frame.groupby("cell_type"):
            row = {"source": source, "cell_type": cell_type}
            for channel, values in part.groupby("channel")["mean"]:
                row[f"w{channel} mean"] = float(values.median())
            w1 = part[part["channel"] == 1]
            if "n_nuclei" in w1 and len(w1):
                scale = reference_side ** 2 / (w1["height"] * w1["width"])
                row["nuclei per field"] = float((w1["n_nuclei"] * scale).median())
            rows.append(row)
    out = pd.DataFrame(rows)
    if {"real", "synthetic"} <= set(out.get("source", [])):
        value_cols = [c for c in out.columns if c not in ("source", "cell_type")]
        real_rows = out[out["source"] == "real"].set_index("cell_type")[value_cols]
        synth_rows = out[out["source"] == "synthetic"].set_index("cell_type")[value_cols]
        ratio = (synth_rows / real_rows).dropna(how="all").reset_index().assign(source="synthetic / real")
        out = pd.concat([out, ratio], ignore_index=True)
    return out.round(2)


def table1_comparison(table1: pd.DataFrame, real_table: pd.DataFrame | None, data_name: str) -> pd.DataFrame:
    """Table 1 of this data (``table1``, :func:`class_sets`) beside the paper's printed table and, when
    the real pieces are there (``real_table`` not None), the real release (:func:`compare_class_sets`)."""
    sources = {"paper (as printed)": PAPER_TABLE1}
    if real_table is not None:
        sources["real RxRx1 (Kaggle 2023)"] = class_sets(real_table)
    sources[f"this data ({data_name})"] = table1
    return compare_class_sets(sources)


def paper_table1_check(real_table: pd.DataFrame | None) -> str:
    """Check the text's account of the paper's Table 1 against the real release: the real class sets
    sum to :data:`RXRX1_CLASSES` and the printed ones to :data:`PAPER_TABLE1_CLASSES`; returns the
    difference paper minus real per class set (plain ints), or a note when the real pieces are absent.

    Raises:
        ValueError: the real release or the printed table does not sum as the notebook's text says.
    """
    if real_table is None:
        return "real RxRx1 pieces not found: the paper's Table 1 is not checked against the real release"
    sets = class_sets(real_table)
    real = {int(k): int(n) for k, n in zip(sets["samples_per_class"], sets["n_classes"])}
    if sum(real.values()) != RXRX1_CLASSES or sum(PAPER_TABLE1.values()) != PAPER_TABLE1_CLASSES:
        raise ValueError(f"Table 1: the real release sums to {sum(real.values())} classes (expected {RXRX1_CLASSES}) "
                         f"and the printed table to {sum(PAPER_TABLE1.values())} (expected {PAPER_TABLE1_CLASSES}): "
                         f"{real} vs {PAPER_TABLE1}")
    difference = {k: PAPER_TABLE1.get(k, 0) - real.get(k, 0) for k in sorted(real)}
    return f"paper minus real, per class set: {difference}"


def channel_variance(intensities: pd.DataFrame) -> pd.DataFrame:
    """Mean and variance of the per-image mean pixel value per channel (the numbers behind Figure 3's
    legend), one column per channel, rounded to two decimals."""
    return intensities.groupby("channel")["mean"].agg(["mean", "var"]).round(2).T


def first_training_plate(table: pd.DataFrame) -> dict:
    """``{'experiment': ..., 'plate': int}`` of the first training site (the plate whose layout is drawn).

    Raises:
        ValueError: the table has no training site.
    """
    train = table[table["split"] == "train"]
    if train.empty:
        raise ValueError("no training site in the metadata: no plate layout to draw")
    return {"experiment": train.iloc[0]["experiment"], "plate": int(train.iloc[0]["plate"])}


@dataclass(frozen=True)
class MeasuredIntensities:
    """:func:`image_intensities` of a set of sites: ``values`` and ``problems``, and a note saying how many."""

    values: pd.DataFrame
    problems: pd.DataFrame
    note: str


def measure_intensities(root: str | Path, sites: pd.DataFrame, *, what: str = "images") -> MeasuredIntensities:
    """Per-channel intensities and nuclei per w1 image of ``sites`` (:func:`image_intensities` with
    ``count_nuclei_w1``), with a note: images read and channel files absent or unreadable."""
    values, problems = image_intensities(root, sites, count_nuclei_w1=True)
    return MeasuredIntensities(values, problems, f"{what} read: {len(values)}; absent or unreadable channel files: "
                                                 f"{len(problems)}")


def real_intensities(real_root: str | Path | None, real_table: pd.DataFrame | None,
                     like: pd.DataFrame) -> MeasuredIntensities:
    """:func:`measure_intensities` of every real site with images, or, without the real pieces, an empty
    frame with the columns of ``like`` (so that the realism figures draw the synthetic side alone)."""
    from .availability import imaged_sites

    if real_root is None or real_table is None:
        return MeasuredIntensities(like.iloc[0:0], pd.DataFrame(columns=["site_id", "channel", "path", "error"]),
                                   "real RxRx1 pieces not found: the realism check shows the synthetic data alone")
    return measure_intensities(real_root, real_table[imaged_sites(real_root, real_table)], what="real images")


def realism_flags(summary: pd.DataFrame, factor: float = 2.0) -> list[str]:
    """The values of :func:`realism_summary` far from the real data: a synthetic/real ratio above
    ``factor`` or below ``1 / factor``, one ``'<value> of <cell type> (ratio r)'`` per value."""
    if "source" not in summary:
        return []
    ratios = summary[summary["source"] == "synthetic / real"].set_index("cell_type").drop(columns="source")
    far = ratios.stack().dropna().astype(float)
    far = far[(far > factor) | (far < 1.0 / factor)]
    return [f"{column} of {cell_type} (ratio {ratio:.2f})" for (cell_type, column), ratio in far.items()]


def realism_note(summary: pd.DataFrame, factor: float = 2.0) -> str:
    """One paragraph on :func:`realism_summary`: which synthetic values lie more than ``factor`` times
    from the real ones (flagged), all within it, or nothing to compare with."""
    if "source" not in summary or not (summary["source"] == "synthetic / real").any():
        return "No real images beside these: the synthetic values are not compared with real ones here."
    flags = realism_flags(summary, factor)
    if not flags:
        return f"Every synthetic value lies within a factor {factor:g} of the real one (synthetic / real rows)."
    return (f"FLAGGED, far from the real data (synthetic / real outside {1 / factor:.2g} to {factor:g}): "
            + "; ".join(flags) + ".")
