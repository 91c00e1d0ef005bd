"""Grad-CAMO (Ma, Gopalakrishnan & Xie 2024): how much of the Grad-CAM attention falls on the cells.

Grad-CAMO is the share of a CAM's mass inside the cell(s) of interest: ``sum(cam * mask) / sum(cam)``,
in [0, 1]; 1 means all attention on the cell, the share of the image the mask covers is what a
uniform map gets. It is computed per cell (a label image, one share per label), per image (all cells
together) and averaged over a set.

Masks come from the synthetic ground truth (``truth/masks/{experiment}/Plate{p}/{well}_s{site}_cells.png``,
uint16 cell labels, and ``_phenotype.png``, where the phenotype was planted) or, for real images, from
:mod:`rxlib.segmentation` (nuclei from w1 grown into cells); :func:`segmentation_scores` scores the
latter against the former.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rxlib.segmentation import grow_cells, segment_nuclei


def _as_map(cam, name: str = "cam") -> np.ndarray:
    if hasattr(cam, "detach"):
        cam = cam.detach().cpu().numpy()
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"{name} must be a 2-d (H, W) map, got shape {cam.shape}")
    return cam


def grad_camo_score(cam, mask) -> float:
    """Share of the attention inside ``mask``.

    Args:
        cam: ``(H, W)`` non-negative map at the mask's resolution (numpy or torch).
        mask: ``(H, W)`` boolean (or label: non-zero = inside) mask.

    Returns:
        ``sum(cam[mask]) / sum(cam)``; NaN for an all-zero CAM.

    Raises:
        ValueError: shapes differ or the CAM has negative values.
    """
    cam = _as_map(cam)
    mask = np.asarray(mask) != 0
    if mask.shape != cam.shape:
        raise ValueError(f"mask of shape {mask.shape} does not match cam {cam.shape}; upsample the CAM")
    if cam.min() < 0:
        raise ValueError(f"cam has negative values (min {cam.min():.3g}); Grad-CAM maps are ReLU'd")
    total = cam.sum()
    return float(cam[mask].sum() / total) if total > 0 else float("nan")


def grad_camo_per_cell(cam, labels) -> pd.DataFrame:
    """Grad-CAMO of every cell of a label image.

    Args:
        cam: ``(H, W)`` non-negative map.
        labels: ``(H, W)`` integer labels, 0 = background.

    Returns:
        DataFrame with ``cell`` (label), ``area_fraction`` (share of the image the cell covers, the
        score a uniform map would get) and ``grad_camo``; one row per label present.
    """
    cam = _as_map(cam)
    labels = np.asarray(labels)
    if labels.shape != cam.shape:
        raise ValueError(f"labels of shape {labels.shape} do not match cam {cam.shape}")
    ids = np.unique(labels[labels > 0])
    total = cam.sum()
    sums = np.bincount(labels.ravel().astype(np.int64), weights=cam.ravel(), minlength=int(labels.max(initial=0)) + 1)
    areas = np.bincount(labels.ravel().astype(np.int64), minlength=len(sums))
    return pd.DataFrame({
        "cell": ids.astype(int),
        "area_fraction": areas[ids] / labels.size,
        "grad_camo": sums[ids] / total if total > 0 else np.nan,
    })


def grad_camo_image(cam, labels) -> dict[str, float]:
    """Grad-CAMO of one image: attention on all cells together versus the background.

    Returns:
        ``{'grad_camo': share inside any cell, 'background': 1 - that, 'cell_fraction': share of the
        image covered by cells, 'enrichment': grad_camo / cell_fraction, 'mean_per_cell': mean of the
        per-cell shares, 'n_cells': number of cells}``.
    """
    labels = np.asarray(labels)
    score = grad_camo_score(cam, labels > 0)
    cell_fraction = float((labels > 0).mean())
    per_cell = grad_camo_per_cell(cam, labels)
    return {
        "grad_camo": score,
        "background": 1.0 - score if np.isfinite(score) else float("nan"),
        "cell_fraction": cell_fraction,
        "enrichment": score / cell_fraction if cell_fraction > 0 else float("nan"),
        "mean_per_cell": float(per_cell["grad_camo"].mean()) if len(per_cell) else float("nan"),
        "n_cells": len(per_cell),
    }


def grad_camo_set(cams: Iterable, label_images: Iterable, keys: Sequence | None = None) -> pd.DataFrame:
    """Per-image Grad-CAMO over a set of images.

    Args:
        cams: ``(H, W)`` maps (or one ``(N, H, W)`` array/tensor).
        label_images: matching label images.
        keys: optional identifiers per image (e.g. site ids), stored in a ``key`` column.

    Returns:
        One row per image with the fields of :func:`grad_camo_image`; ``frame.mean(numeric_only=True)``
        gives the set average.
    """
    rows = [grad_camo_image(c, l) for c, l in zip(cams, label_images, strict=True)]
    frame = pd.DataFrame(rows)
    if keys is not None:
        if len(keys) != len(frame):
            raise ValueError(f"{len(keys)} keys for {len(frame)} images")
        frame.insert(0, "key", list(keys))
    return frame


# --- masks ------------------------------------------------------------------------------------------


def truth_mask_paths(root: str | Path, experiment: str, plate: int, well: str, site: int) -> dict[str, Path]:
    """Paths of the synthetic ground-truth masks of a site: ``{'cells': ..., 'phenotype': ...}``."""
    folder = Path(root) / "truth" / "masks" / experiment / f"Plate{int(plate)}"
    return {kind: folder / f"{well}_s{int(site)}_{kind}.png" for kind in ("cells", "phenotype")}


def load_truth_masks(root: str | Path, experiment: str, plate: int, well: str, site: int) -> dict[str, np.ndarray]:
    """The synthetic ground truth of one site: cell labels (int32) and the phenotype mask (bool).

    Raises:
        FileNotFoundError: the data set has no ground truth for this site (names the file).
    """
    from rxlib.io import read_mask_png

    out = {}
    for kind, path in truth_mask_paths(root, experiment, plate, well, site).items():
        if not path.exists():
            raise FileNotFoundError(f"no ground-truth mask {path} (is {root} a synthetic data set?)")
        image = read_mask_png(path)
        out[kind] = image.astype(np.int32) if kind == "cells" else image > 0
    return out


def segment_cells(image: np.ndarray, *, cytoplasm_channels: Sequence[int] = (1, 2, 3, 4, 5),
                  max_distance: float = 20.0, min_area: int = 8) -> np.ndarray:
    """Cell labels of a ``(C, H, W)`` site: nuclei from w1 grown into the summed cytoplasm channels.

    Args:
        image: the six-channel stack (w1 first).
        cytoplasm_channels: 0-based channels summed (each min-max scaled) as the cytoplasm signal.
        max_distance: how far (pixels) a cell may extend from its nucleus; scale with the image size.
        min_area: smallest nucleus kept.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected a (C, H, W) stack, got shape {image.shape}")
    if max(cytoplasm_channels, default=0) >= image.shape[0]:
        raise ValueError(f"cytoplasm channels {tuple(cytoplasm_channels)} out of range for {image.shape[0]} channels")
    nuclei = segment_nuclei(image[0], min_area=min_area)
    scaled = [(c - c.min()) / max(float(c.max() - c.min()), 1e-12) for c in image[list(cytoplasm_channels)]]
    return grow_cells(nuclei, np.sum(scaled, axis=0), max_distance=max_distance)


def segmentation_scores(predicted: np.ndarray, truth: np.ndarray, *, match_iou: float = 0.5) -> dict[str, float]:
    """Foreground Dice / IoU and object matching of a predicted label image against the truth.

    Args:
        predicted, truth: ``(H, W)`` label images (0 = background).
        match_iou: IoU above which a predicted cell matches a true one (unique above 0.5).

    Returns:
        ``dice``, ``iou`` (foreground), ``n_true``, ``n_predicted``, ``n_matched``, ``precision``,
        ``recall`` (object level) and ``mean_matched_iou``.
    """
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted labels {predicted.shape} and truth {truth.shape} differ in shape")
    p, t = predicted > 0, truth > 0
    inter, union, total = (p & t).sum(), (p | t).sum(), p.sum() + t.sum()
    n_p, n_t = int(predicted.max(initial=0)), int(truth.max(initial=0))
    # contingency of labels -> object IoUs
    joint = np.bincount(predicted.ravel().astype(np.int64) * (n_t + 1) + truth.ravel().astype(np.int64),
                        minlength=(n_p + 1) * (n_t + 1)).reshape(n_p + 1, n_t + 1)
    area_p, area_t = joint.sum(axis=1), joint.sum(axis=0)
    iou = joint[1:, 1:] / np.maximum(area_p[1:, None] + area_t[None, 1:] - joint[1:, 1:], 1)
    present_p = np.flatnonzero(area_p[1:] > 0)
    present_t = np.flatnonzero(area_t[1:] > 0)
    matched = iou[np.ix_(present_p, present_t)] > match_iou if len(present_p) and len(present_t) else np.zeros((0, 0), bool)
    n_matched = int(matched.any(axis=0).sum()) if matched.size else 0
    return {
        "dice": float(2 * inter / total) if total else 1.0,
        "iou": float(inter / union) if union else 1.0,
        "n_true": len(present_t), "n_predicted": len(present_p), "n_matched": n_matched,
        "precision": n_matched / len(present_p) if len(present_p) else float("nan"),
        "recall": n_matched / len(present_t) if len(present_t) else float("nan"),
        "mean_matched_iou": float(iou[np.ix_(present_p, present_t)][matched].mean()) if n_matched else float("nan"),
    }


def segmentation_table(root: str | Path, metadata: pd.DataFrame, **segment_kwargs) -> pd.DataFrame:
    """Score :func:`segment_cells` against the synthetic ground truth for every site of ``metadata``.

    Args:
        root: synthetic data root (images and ``truth/``).
        metadata: rows with ``experiment``, ``plate``, ``well``, ``site``, ``cell_type``
            (as :func:`rxlib.data.read_metadata` gives).
        **segment_kwargs: passed to :func:`segment_cells`.

    Returns:
        One row per site with the fields of :func:`segmentation_scores`; aggregate per cell type with
        ``frame.groupby('cell_type').mean(numeric_only=True)``.
    """
    from rxlib.data.images import load_site

    rows = []
    for rec in metadata.itertuples(index=False):
        image = load_site(root, rec.experiment, int(rec.plate), rec.well, int(rec.site))
        truth = load_truth_masks(root, rec.experiment, rec.plate, rec.well, rec.site)["cells"]
        scores = segmentation_scores(segment_cells(image, **segment_kwargs), truth)
        rows.append({"experiment": rec.experiment, "plate": rec.plate, "well": rec.well, "site": rec.site,
                     "cell_type": rec.cell_type, **scores})
    return pd.DataFrame(rows)


# --- a whole data set ----------------------------------------------------------------------------------


MASK_SOURCES = ("auto", "truth", "segmentation")


def has_truth_masks(root: str | Path) -> bool:
    """Whether ``root`` holds the synthetic ground-truth masks (``truth/masks/``)."""
    return (Path(root) / "truth" / "masks").is_dir()


def resolve_masks(root: str | Path, masks: str = "auto") -> str:
    """``truth`` or ``segmentation``: ``auto`` takes the ground truth where ``root`` has it.

    Raises:
        ValueError: unknown source, or ``truth`` asked of a data root without it (names the folder).
    """
    if masks not in MASK_SOURCES:
        raise ValueError(f"masks={masks!r}; expected one of {MASK_SOURCES}")
    if masks == "auto":
        return "truth" if has_truth_masks(root) else "segmentation"
    if masks == "truth" and not has_truth_masks(root):
        raise ValueError(f"{root} has no truth/masks folder: use masks='segmentation' (real data)")
    return masks


#: The columns of :func:`segmentation_check`'s per-cell-type table.
SEGMENTATION_COLUMNS = ("dice", "iou", "precision", "recall", "n_true", "n_predicted")


@dataclass(frozen=True)
class SegmentationCheck:
    """The segmentation scored against the truth, per cell type (``table``, empty without truth masks),
    and a note saying what was scored."""

    table: pd.DataFrame
    note: str


def segmentation_check(root: str | Path, sites, n_sites: int = 48, *, seed: int = 0) -> SegmentationCheck:
    """:func:`segmentation_table` on a sample of ``sites`` (a data set with a ``table``, spread over cell
    types), averaged per cell type; where ``root`` has no truth masks, an empty table and a note
    saying the segmentation cannot be scored."""
    from rxlib.explain.sites import sample_positions

    if not has_truth_masks(root):
        return SegmentationCheck(pd.DataFrame(columns=list(SEGMENTATION_COLUMNS)),
                                 f"no truth masks under {root}: the segmentation Grad-CAMO used above cannot be scored here")
    sample = sites.table.iloc[sample_positions(sites.table, n_sites, seed=seed)]
    table = segmentation_table(root, sample).groupby("cell_type").mean(numeric_only=True)[list(SEGMENTATION_COLUMNS)]
    return SegmentationCheck(table.round(3), f"segmentation of {len(sample)} sites of {root} scored against the truth masks")


def grad_camo_dataset(model, dataset, root: str | Path, positions: Sequence[int] | None = None, *,
                      layer: str | None = None, batch_size: int = 64, head: str = "logits",
                      masks: str = "auto", device: str | None = None) -> pd.DataFrame:
    """Grad-CAM of each site for its own label, scored against cell masks.

    Args:
        model: an RxNet (called as ``model(images, cell_type)``).
        dataset: items with ``image``, ``cell_type``, ``label`` and a ``table`` of metadata
            (:class:`rxlib.data.RxRx1Dataset`, e.g. :func:`rxlib.data.splits.split_sites`); images normalised
            as in training. Read batch by batch: only ``batch_size`` images and the per-image scores are held.
        root: the data root of these sites (for the ground-truth masks).
        positions: items to score (default all); sites without a label (-1) are skipped.
        layer: Grad-CAM layer (dotted path inside ``features``); None: the architecture's default
            (:func:`~rxlib.explain.cam.default_layer`: ``denseblock4`` / ``layer4``).
        batch_size: images per Grad-CAM pass.
        head: ``'logits'`` or ``'cosine'``.
        masks: ``truth`` (the synthetic ground truth), ``segmentation`` (:func:`segment_cells` of the
            site's own pixels, ``dataset.raw_image``: what real data allows) or ``auto`` (the truth where
            ``root`` has it).
        device: where the Grad-CAM passes run (the configured ``train.device``; None: where the model is);
            the model is moved back afterwards.

    Returns:
        One row per site: its metadata (``site_id``, ``experiment``, ``cell_type``, ``well_type``,
        ``label``), ``layer``, ``masks`` (the source used), the fields of :func:`grad_camo_image` and
        ``phenotype_share`` (the share of attention on the pixels where the phenotype was planted;
        NaN where none was, and always with segmentation masks).
    """
    from rxlib.train.loop import on_device

    from rxlib.explain.cam import default_layer

    source = resolve_masks(root, masks)
    layer = default_layer(model) if layer is None else layer  # the rows name the layer used
    table = dataset.table
    positions = list(range(len(dataset))) if positions is None else [int(p) for p in positions]
    positions = [p for p in positions if int(table["label"].iloc[p]) >= 0]
    if not positions:
        raise ValueError("no labelled sites to score")
    rows = []
    with on_device(model, device):  # one move there and back for the whole pass
        for start in range(0, len(positions), batch_size):
            rows += _grad_camo_chunk(model, dataset, root, positions[start:start + batch_size], source, layer=layer,
                                     head=head)
    return pd.DataFrame(rows)


def _grad_camo_chunk(model, dataset, root, chunk: list[int], source: str, *, layer: str, head: str) -> list[dict]:
    """Rows of :func:`grad_camo_dataset` for the items ``chunk`` (one Grad-CAM pass)."""
    from rxlib.explain.cam import grad_cam
    from rxlib.explain.sites import site_batch

    table = dataset.table
    rows = []
    batch = site_batch(dataset, chunk)
    cams = grad_cam(model, batch["image"], batch["cell_type"], batch["label"].tolist(), layer=layer,
                    head=head, upsample=True).cpu().numpy()
    clean = dataset.with_cue(None) if getattr(dataset, "cue", None) is not None else dataset
    for cam, p in zip(cams, chunk):
        rec = table.iloc[p]
        if source == "truth":
            found = load_truth_masks(root, rec["experiment"], int(rec["plate"]), rec["well"], int(rec["site"]))
            cells, planted = found["cells"], found["phenotype"]
        else:  # segmented from the site without the cue, so that the grating cannot move the cell masks
            cells, planted = segment_cells(clean.raw_image(p)), None
        scores = grad_camo_image(cam, cells)
        phenotype = grad_camo_score(cam, planted) if planted is not None and planted.any() else float("nan")
        rows.append({"site_id": rec["site_id"], "experiment": rec["experiment"], "cell_type": rec["cell_type"],
                     "well_type": rec["well_type"], "label": int(rec["label"]), "layer": layer, "masks": source,
                     **scores, "phenotype_share": phenotype})
    return rows


def grad_camo_summary(frame: pd.DataFrame, by: str | Sequence[str] = "cell_type") -> pd.DataFrame:
    """Mean Grad-CAMO per group and over all sites (row ``all``) of a :func:`grad_camo_dataset` frame.

    Columns: the group, ``n``, ``grad_camo`` (mean share on cells), ``cell_fraction`` (mean share of the
    image the cells cover: what a uniform map scores), ``enrichment`` (grad_camo / cell_fraction, mean
    per image; 1 = no preference for cells) and ``phenotype_share``.
    """
    by = [by] if isinstance(by, str) else list(by)
    cols = ["grad_camo", "cell_fraction", "enrichment", "phenotype_share"]
    grouped = frame.groupby(by, sort=True)[cols].mean()
    grouped.insert(0, "n", frame.groupby(by, sort=True).size())
    total = pd.DataFrame([{**{b: "all" for b in by}, "n": len(frame), **frame[cols].mean().to_dict()}]).set_index(by)
    return pd.concat([grouped, total]).reset_index()
