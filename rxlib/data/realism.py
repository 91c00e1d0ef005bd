"""How close a synthetic RxRx1 is to the real one: a table of distances, each with a threshold
computed from the real data itself, and a pass/fail column.

Metrics, per cell type and channel (``w1``..``w6``; the nucleus metrics on w1 only):

``intensity``
    Wasserstein distance between the per-pixel values (every 4th pixel in each direction of every
    site), divided by the smaller of the two sides' standard deviations: unit-free, 0 for equal
    histograms, and the same statistic for synthetic vs real as for the real batch-to-batch
    distances that set the threshold (:func:`normalised_wasserstein`).
``foreground``
    Absolute difference of the median Otsu foreground fraction of the channel (smoothed, sigma 1).
``texture``
    |log ratio| of the median GLCM contrast (``skimage.feature.graycomatrix``/``graycoprops``,
    distance 1, angles 0 and 90 degrees) inside the channel's Otsu foreground, quantised to 16
    levels between its 1st and 99th percentile (so that brightness does not count, only pattern).
    On w1 the foreground is the nuclei: chromatin texture.
``nuclei_per_site``
    |log ratio| of the median number of nuclei per site (``rxlib.segmentation.segment_nuclei``),
    scaled to a 512x512 field.
``nucleus_area``
    |log ratio| of the median nucleus area (pixels, scaled to a 512x512 field).
``nucleus_area_distribution``
    Wasserstein distance between the nucleus areas, normalised as ``intensity``.

Thresholds (:func:`realism_thresholds`) are computed, never typed: for each cell type of the real
data the same metric is computed between its real batches (its experiments where it has two or
more, as HEPG2-01 vs HEPG2-08 in the real pieces, otherwise plates), and the largest such
batch-to-batch distance over cell types, times ``factor`` (default 1), is the threshold of that
metric and channel. In words: the synthetic images must be no further from the real ones than two
real batches of one cell type are from each other. The batch distance of the cell type itself is
in the table too (``real_batch_distance``), as a stricter reference.

Nothing here writes files; :func:`realism_table` reads images and returns a DataFrame.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance
from skimage.feature import graycomatrix, graycoprops

from ..io import read_png
from ..segmentation import otsu_foreground, segment_nuclei

_SITE_FILE = re.compile(r"^([A-P]\d{2})_s(\d+)_w(\d)\.png$")
#: Pixel subsampling step for the intensity histograms (every 4th row and column).
PIXEL_STEP = 4
GLCM_LEVELS = 16
METRICS = ("intensity", "foreground", "texture", "nuclei_per_site", "nucleus_area", "nucleus_area_distribution")
TABLE_COLUMNS = ["cell_type", "channel", "metric", "real", "synthetic", "distance", "threshold",
                 "real_batch_distance", "passed", "n_real_sites", "n_synthetic_sites"]


@dataclass
class SiteMeasures:
    """What one site contributes: per channel a pixel sample, foreground fraction and GLCM contrast;
    from w1 the nucleus areas and count (scaled to a 512x512 field)."""

    cell_type: str
    batch: str
    pixels: dict[int, np.ndarray] = field(default_factory=dict)
    foreground: dict[int, float] = field(default_factory=dict)
    texture: dict[int, float] = field(default_factory=dict)
    nucleus_areas: np.ndarray | None = None
    n_nuclei: float | None = None


def list_sites(root: str | Path) -> pd.DataFrame:
    """Every site under ``root`` with its channel files: ``experiment, plate, well, site, cell_type,
    paths`` (``paths``: channel -> path). Works on the Kaggle layout (``{train,test}/{experiment}/
    Plate{n}/``) and on a synthetic set (``images/{experiment}/Plate{n}/``)."""
    root = Path(root)
    sites: dict[tuple, dict[int, Path]] = {}
    for path in sorted(root.rglob("*_s*_w*.png")):
        match = _SITE_FILE.match(path.name)
        if not match or not path.parent.name.lower().startswith("plate"):
            continue
        well, site, channel = match.group(1), int(match.group(2)), int(match.group(3))
        key = (path.parent.parent.name, int(path.parent.name[5:]), well, site)
        sites.setdefault(key, {})[channel] = path
    rows = [{"experiment": e, "plate": p, "well": w, "site": s, "cell_type": e.split("-")[0].upper(), "paths": paths}
            for (e, p, w, s), paths in sites.items()]
    return pd.DataFrame(rows, columns=["experiment", "plate", "well", "site", "cell_type", "paths"])


def _choose(sites: pd.DataFrame, max_sites: int | None) -> pd.DataFrame:
    """At most ``max_sites`` sites per cell type, spread evenly over the sorted list (deterministic)."""
    if max_sites is None:
        return sites
    parts = []
    for _, part in sites.groupby("cell_type", sort=True):
        idx = np.unique(np.linspace(0, len(part) - 1, min(max_sites, len(part))).round().astype(int))
        parts.append(part.iloc[idx])
    return pd.concat(parts) if parts else sites


def glcm_contrast(image: np.ndarray, mask: np.ndarray, levels: int = GLCM_LEVELS) -> float:
    """GLCM contrast of ``image`` inside ``mask`` (pairs with both pixels in the mask only).

    The masked values are quantised to ``levels`` grey levels between their 1st and 99th
    percentile; pixels outside the mask get an extra level whose row and column are dropped.
    """
    mask = np.asarray(mask, bool)
    if mask.sum() < 16:
        return float("nan")
    values = np.asarray(image, np.float64)
    lo, hi = np.percentile(values[mask], [1, 99])
    q = np.clip((values - lo) / max(hi - lo, 1e-12) * levels, 0, levels - 1).astype(np.uint8)
    q[~mask] = levels
    glcm = graycomatrix(q, distances=[1], angles=[0, np.pi / 2], levels=levels + 1, symmetric=True)
    glcm = glcm[:levels, :levels].astype(np.float64)
    total = glcm.sum(axis=(0, 1), keepdims=True)
    if not (total > 0).all():
        return float("nan")
    return float(graycoprops(glcm / total, "contrast").mean())


def measure_site(paths: dict[int, Path], cell_type: str, batch: str) -> SiteMeasures:
    """Read a site's channel files and measure them (see :class:`SiteMeasures`)."""
    out = SiteMeasures(cell_type, batch)
    for channel, path in sorted(paths.items()):
        image = read_png(path).astype(np.float32)
        out.pixels[channel] = image[::PIXEL_STEP, ::PIXEL_STEP].ravel()
        foreground = otsu_foreground(image, 1.0)
        out.foreground[channel] = float(foreground.mean())
        if channel == 1:
            labels = segment_nuclei(image)
            scale = 512.0 ** 2 / image.size  # per 512x512 field
            areas = np.bincount(labels.ravel())[1:]
            out.nucleus_areas = areas * (512.0 / image.shape[0]) ** 2
            out.n_nuclei = float(len(areas) * scale)
            foreground = labels > 0
        out.texture[channel] = glcm_contrast(image, foreground)
    return out


def measure(root: str | Path, *, max_sites: int | None = None, batch_by: str = "experiment") -> list[SiteMeasures]:
    """:func:`measure_site` of every site under ``root`` (at most ``max_sites`` per cell type).

    Args:
        batch_by: what a batch is, ``experiment`` or ``plate`` (``experiment_plate``).
    """
    sites = _choose(list_sites(root), max_sites)
    if sites.empty:
        raise FileNotFoundError(f"{root}: no site images ({{well}}_s{{site}}_w{{c}}.png under Plate folders)")
    return [measure_site(r.paths, r.cell_type, r.experiment if batch_by == "experiment" else f"{r.experiment}_{r.plate}")
            for r in sites.itertuples()]


def normalised_wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein distance between two samples in units of the smaller of their two standard deviations:
    unit-free and symmetric, so that a synthetic-vs-real distance and a real batch-to-batch distance (its
    threshold) are the same statistic, and it grows both with a shift and with one side far wider than
    the other. (Dividing by the real side's spread alone made the two differ; the spread of both samples
    pooled grew with the shift itself, capping the distance near 2; the root mean square of the two
    spreads hid a synthetic side ten times too wide.)"""
    spread = min(float(np.std(a)), float(np.std(b)))
    return float(wasserstein_distance(a, b) / max(spread, 1e-9))


def _log_ratio(a: float, b: float) -> float:
    return float(abs(np.log(max(a, 1e-9) / max(b, 1e-9))))


def compare(real: list[SiteMeasures], other: list[SiteMeasures]) -> pd.DataFrame:
    """Every metric between two lists of site measures: columns ``channel, metric, real, synthetic, distance`` (``real``/``synthetic``: the
    summary value of each side: mean pixel value, median foreground fraction, median contrast,
    median nuclei per site or median area)."""
    rows = []
    channels = sorted({c for m in real for c in m.pixels} & {c for m in other for c in m.pixels})
    for c in channels:
        a = np.concatenate([m.pixels[c] for m in real if c in m.pixels])
        b = np.concatenate([m.pixels[c] for m in other if c in m.pixels])
        rows.append((c, "intensity", a.mean(), b.mean(), normalised_wasserstein(a, b)))
        fa = np.median([m.foreground[c] for m in real if c in m.foreground])
        fb = np.median([m.foreground[c] for m in other if c in m.foreground])
        rows.append((c, "foreground", fa, fb, abs(fa - fb)))
        ta = np.nanmedian([m.texture[c] for m in real if c in m.texture])
        tb = np.nanmedian([m.texture[c] for m in other if c in m.texture])
        rows.append((c, "texture", ta, tb, _log_ratio(ta, tb)))
    na = np.median([m.n_nuclei for m in real if m.n_nuclei is not None])
    nb = np.median([m.n_nuclei for m in other if m.n_nuclei is not None])
    rows.append((1, "nuclei_per_site", na, nb, _log_ratio(na, nb)))
    aa = np.concatenate([m.nucleus_areas for m in real if m.nucleus_areas is not None])
    ab = np.concatenate([m.nucleus_areas for m in other if m.nucleus_areas is not None])
    if len(aa) and len(ab):
        rows.append((1, "nucleus_area", np.median(aa), np.median(ab), _log_ratio(np.median(aa), np.median(ab))))
        rows.append((1, "nucleus_area_distribution", np.median(aa), np.median(ab),
                     normalised_wasserstein(aa, ab)))
    frame = pd.DataFrame(rows, columns=["channel", "metric", "real", "synthetic", "distance"])
    return frame.astype({"real": float, "synthetic": float, "distance": float})


def batch_distances(real: list[SiteMeasures]) -> pd.DataFrame:
    """Per cell type, the largest distance between two of its real batches, for every metric:
    columns ``cell_type, channel, metric, real_batch_distance, batches`` (cell types with a single
    batch are left out)."""
    frames = []
    for cell_type in sorted({m.cell_type for m in real}):
        mine = [m for m in real if m.cell_type == cell_type]
        batches = sorted({m.batch for m in mine})
        for a, b in itertools.combinations(batches, 2):
            part_a = [m for m in mine if m.batch == a]
            part_b = [m for m in mine if m.batch == b]
            frame = compare(part_a, part_b)
            frame = frame.rename(columns={"distance": "real_batch_distance"})[["channel", "metric", "real_batch_distance"]]
            frames.append(frame.assign(cell_type=cell_type, batches=f"{a} vs {b}"))
    if not frames:
        return pd.DataFrame(columns=["cell_type", "channel", "metric", "real_batch_distance", "batches"])
    frame = pd.concat(frames, ignore_index=True)
    idx = frame.groupby(["cell_type", "channel", "metric"])["real_batch_distance"].idxmax()
    return frame.loc[idx, ["cell_type", "channel", "metric", "real_batch_distance", "batches"]].reset_index(drop=True)


def thresholds_from_batches(batches: pd.DataFrame, factor: float = 1.0) -> pd.DataFrame:
    """Threshold per metric and channel: ``factor`` x the largest real batch-to-batch distance over
    cell types; columns ``channel, metric, threshold, from`` (``from``: the cell type and batches)."""
    if batches.empty:
        return pd.DataFrame(columns=["channel", "metric", "threshold", "from"])
    idx = batches.groupby(["channel", "metric"])["real_batch_distance"].idxmax()
    top = batches.loc[idx]
    return pd.DataFrame({"channel": top["channel"].to_numpy(), "metric": top["metric"].to_numpy(),
                         "threshold": factor * top["real_batch_distance"].to_numpy(),
                         "from": (top["cell_type"] + ": " + top["batches"]).to_numpy()})


def realism_thresholds(real_root: str | Path, *, max_sites: int | None = None, factor: float = 1.0,
                       real: list[SiteMeasures] | None = None) -> pd.DataFrame:
    """Thresholds computed from the real data (see the module docstring): per metric and channel,
    ``factor`` x the largest distance between two real batches of one cell type (experiments where
    it has two or more, else plates; :func:`measure_batches`)."""
    real = real if real is not None else measure_batches(real_root, max_sites=max_sites)
    return thresholds_from_batches(batch_distances(real), factor)


def realism_table(real_root: str | Path, synthetic_root: str | Path, *, max_sites: int | None = 16,
                  factor: float = 1.0, real: list[SiteMeasures] | None = None,
                  synthetic: list[SiteMeasures] | None = None) -> pd.DataFrame:
    """Real vs synthetic, per cell type, channel and metric, with thresholds from the real data.

    Args:
        real_root: real RxRx1 images (e.g. ``../shared/rxrx1/kaggle-2023``).
        synthetic_root: a synthetic set (``images/`` below it).
        max_sites: sites per cell type read from each side (None: all).
        factor: multiplies the real batch-to-batch distance to give the threshold.
        real, synthetic: measures already made (:func:`measure_batches` / :func:`measure`), to
            compare several synthetic sets without reading the real images again.

    Returns:
        Columns ``cell_type, channel, metric, real, synthetic, distance, threshold,
        real_batch_distance, passed, n_real_sites, n_synthetic_sites``; ``passed`` is
        ``distance <= threshold``. Cell types absent from either side are left out.
    """
    real = real if real is not None else measure_batches(real_root, max_sites=max_sites)
    synthetic = synthetic if synthetic is not None else measure(synthetic_root, max_sites=max_sites)
    batches = batch_distances(real)
    limits = thresholds_from_batches(batches, factor)
    frames = []
    for cell_type in sorted({m.cell_type for m in real} & {m.cell_type for m in synthetic}):
        r = [m for m in real if m.cell_type == cell_type]
        s = [m for m in synthetic if m.cell_type == cell_type]
        frames.append(compare(r, s).assign(cell_type=cell_type, n_real_sites=len(r), n_synthetic_sites=len(s)))
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table = table.merge(limits[["channel", "metric", "threshold"]], on=["channel", "metric"], how="left")
    table = table.merge(batches[["cell_type", "channel", "metric", "real_batch_distance"]],
                        on=["cell_type", "channel", "metric"], how="left")
    table["passed"] = table["distance"] <= table["threshold"]
    table["channel"] = "w" + table["channel"].astype(str)
    return table[TABLE_COLUMNS]


def measure_batches(real_root: str | Path, *, max_sites: int | None = None) -> list[SiteMeasures]:
    """:func:`measure` of the real data with batches as experiments for cell types that have two or
    more experiments, and as plates (``{experiment}_{plate}``) for the others."""
    sites = _choose(list_sites(real_root), max_sites)
    if sites.empty:
        raise FileNotFoundError(f"{real_root}: no site images ({{well}}_s{{site}}_w{{c}}.png under Plate folders)")
    n_experiments = sites.groupby("cell_type")["experiment"].nunique()
    out = []
    for r in sites.itertuples():
        batch = r.experiment if n_experiments[r.cell_type] >= 2 else f"{r.experiment}_Plate{r.plate}"
        out.append(measure_site(r.paths, r.cell_type, batch))
    return out


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Passed / total per metric (rows) and cell type (columns), for a compact view."""
    if table.empty:
        return pd.DataFrame()
    grouped = table.groupby(["metric", "cell_type"])["passed"].agg(lambda s: f"{int(s.sum())}/{len(s)}")
    return grouped.unstack("cell_type")


def main(argv: list[str] | None = None) -> None:
    """``python -m rxlib.data.realism REAL_ROOT SYNTHETIC_ROOT [--max-sites N] [--factor F]``: print
    the thresholds, the table and the pass counts."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rxlib.data.realism", description=main.__doc__)
    parser.add_argument("real_root")
    parser.add_argument("synthetic_root", nargs="+")
    parser.add_argument("--max-sites", type=int, default=16, help="sites per cell type read from each side")
    parser.add_argument("--factor", type=float, default=1.0, help="threshold = factor x real batch distance")
    args = parser.parse_args(argv)
    real = measure_batches(args.real_root)
    with pd.option_context("display.width", 250, "display.max_rows", 1000, "display.max_columns", 20):
        print(realism_thresholds(args.real_root, real=real, factor=args.factor).round(3).to_string())
        for root in args.synthetic_root:
            table = realism_table(args.real_root, root, max_sites=args.max_sites, factor=args.factor, real=real)
            print(f"\n== {root}: {int(table['passed'].sum())}/{len(table)} passed")
            print(table.round(3).to_string())
            print(summarise(table).to_string())


if __name__ == "__main__":
    main()
