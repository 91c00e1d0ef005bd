"""Localisation of explanations against the planted cell masks of the synthetic data set.

Three metrics from the localisation group of Quantus (Hedström et al. 2023), on precomputed maps:

- **pointing game** (Zhang et al. 2018): 1 when the map's maximum lies inside the mask (any of
  several tied maxima counts), else 0;
- **relevance mass accuracy** (Arras et al. 2022): the share of the *positive* relevance that falls
  inside the mask, ``sum(max(a, 0)[mask]) / sum(max(a, 0))``; for a non-negative Grad-CAM this is
  Grad-CAMO's score (:func:`rxlib.explain.gradcamo.grad_camo_score`);
- **relevance rank accuracy** (Arras et al. 2022): of the ``K = |mask|`` highest-ranked pixels, the
  share inside the mask.

Each is NaN for an empty mask (nothing to point at), as in Quantus. The chance level of each, what a
map with no information scores, is reported beside it by :func:`localisation_table`: the mask's
share of the image for relevance mass and rank accuracy (and for the pointing game of a random
single-pixel maximum).

Why not Quantus itself: quantus 0.6.0 installs next to this torch (2.14) and numpy (2.4) with ``pip
install quantus`` (adding ``opencv-python`` and ``cachetools``), imports, and accepts precomputed
maps (``metric(model=None, x_batch=..., y_batch=..., a_batch=maps, s_batch=masks)``, with
``normalise=False``). Checked once on random maps and masks: its ``RelevanceMassAccuracy`` and
``RelevanceRankAccuracy`` agree with ours to rounding, but its ``PointingGame`` raises a
``UFuncTypeError`` (a float-into-bool multiply) under numpy 2.4, so one of the three would not run.
The computation is a few lines of numpy (``evaluate_batch`` of ``pointing_game.py``,
``relevance_mass_accuracy.py`` and ``relevance_rank_accuracy.py``); we follow those lines exactly,
with one deliberate difference: relevance mass accuracy here counts only positive relevance (Quantus
sums the raw map, which for a signed map can leave [0, 1]; for Grad-CAM maps the two agree). A
dependency on opencv for three formulas, one of them broken, was not worth it. The tests pin every
metric on hand-made maps whose scores are known exactly, and compare with Quantus where it is
installed (skipped otherwise).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


def _batch(maps, masks) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    a = np.asarray(maps, dtype=np.float64)
    s = np.asarray(masks) != 0
    if a.ndim == 2:
        a = a[None]
    if s.ndim == 2:
        s = s[None]
    if a.ndim != 3 or a.shape != s.shape:
        raise ValueError(f"maps {a.shape} and masks {s.shape} must both be (H, W) or (B, H, W) of one shape; "
                         "upsample the maps to the mask size")
    if not np.all(np.isfinite(a)):
        raise ValueError("maps hold non-finite values")
    return a.reshape(len(a), -1), s.reshape(len(s), -1)


def pointing_game(maps, masks) -> np.ndarray:
    """1.0 where the maximum of the map lies inside the mask, 0.0 where not, NaN for an empty mask.

    Args:
        maps: ``(H, W)`` or ``(B, H, W)`` explanations (numpy or torch).
        masks: the same shape, boolean or labels (non-zero = inside).

    Returns:
        ``(B,)`` float array.
    """
    a, s = _batch(maps, masks)
    top = a == a.max(axis=1, keepdims=True)
    hit = np.any(top & s, axis=1).astype(np.float64)
    hit[s.sum(axis=1) == 0] = np.nan
    return hit


def relevance_mass_accuracy(maps, masks) -> np.ndarray:
    """Share of the positive relevance inside the mask; NaN for an empty mask or a map without
    positive relevance. ``(B,)`` float array."""
    a, s = _batch(maps, masks)
    pos = np.clip(a, 0.0, None)
    total = pos.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, (pos * s).sum(axis=1) / total, np.nan)
    out[s.sum(axis=1) == 0] = np.nan
    return out


def relevance_rank_accuracy(maps, masks) -> np.ndarray:
    """Share of the ``K = |mask|`` highest-ranked pixels that lie inside the mask; NaN for an empty mask.

    Ties at the K-th place are broken by a stable sort on the pixel order (as Quantus' ``argsort``
    does, up to its unstable sort); a constant map therefore scores the share of the mask among the
    first K pixels in row-major order, not a meaningful number: check maps for constancy first.
    ``(B,)`` float array.
    """
    a, s = _batch(maps, masks)
    k = s.sum(axis=1)
    order = np.argsort(-a, axis=1, kind="stable")
    ranked_inside = np.take_along_axis(s, order, axis=1)
    within_k = np.arange(a.shape[1])[None, :] < k[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ranked_inside & within_k).sum(axis=1) / k
    out = out.astype(np.float64)
    out[k == 0] = np.nan
    return out


#: The metrics of :func:`localisation_table`, name -> function.
LOCALISATION_METRICS = {
    "pointing_game": pointing_game,
    "relevance_mass_accuracy": relevance_mass_accuracy,
    "relevance_rank_accuracy": relevance_rank_accuracy,
}


def localisation_table(maps, masks, keys: Sequence | None = None) -> pd.DataFrame:
    """Every localisation metric per map, with the mask's share of the image (the chance level of
    relevance mass and rank accuracy: what a map without information scores).

    Args:
        maps: ``(B, H, W)`` explanations, or an iterable of ``(H, W)`` maps.
        masks: the matching masks (boolean or labels).
        keys: optional identifiers per map (e.g. site ids), stored in a ``key`` column.

    Returns:
        One row per map: ``mask_fraction``, ``pointing_game``, ``relevance_mass_accuracy``,
        ``relevance_rank_accuracy``.
    """
    if not hasattr(maps, "shape"):
        maps = np.stack([np.asarray(m.detach().cpu() if hasattr(m, "detach") else m) for m in maps])
    if not hasattr(masks, "shape"):
        masks = np.stack([np.asarray(m) for m in masks])
    a, s = _batch(maps, masks)
    frame = pd.DataFrame({"mask_fraction": s.mean(axis=1)})
    for name, metric in LOCALISATION_METRICS.items():
        frame[name] = metric(maps, masks)
    if keys is not None:
        keys = list(keys)
        if len(keys) != len(frame):
            raise ValueError(f"{len(keys)} keys for {len(frame)} maps")
        frame.insert(0, "key", keys)
    return frame


def localisation_summary(frame: pd.DataFrame, by: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Mean of each metric and of the chance level (``mask_fraction``), per group and overall, with the
    number of maps scored (NaN rows, from empty masks, are left out of each mean)."""
    cols = ["mask_fraction", *LOCALISATION_METRICS]
    if by is None:
        return pd.DataFrame([{"n": int(frame["pointing_game"].notna().sum()), **frame[cols].mean().to_dict()}])
    by = [by] if isinstance(by, str) else list(by)
    out = frame.groupby(by, sort=True)[cols].mean()
    out.insert(0, "n", frame.groupby(by, sort=True)["pointing_game"].count())
    return out.reset_index()


#: The planted masks :func:`gradcam_localisation` scores against: every cell, and the pixels where the
#: class's phenotype was planted (empty on control sites, which are then left out).
MASK_KINDS = ("cells", "phenotype")


def _site_masks(dataset, root, positions: list[int], source: str) -> list[dict[str, np.ndarray]]:
    """Per site, ``{kind: bool mask}``: the planted masks of :data:`MASK_KINDS` (``source='truth'``) or
    the cells segmented from the site's own pixels (``'segmentation'``: what real data allows)."""
    from rxlib.explain.gradcamo import load_truth_masks, segment_cells

    table = dataset.table
    if source == "truth":
        rows = [table.iloc[p] for p in positions]
        return [{k: v > 0 for k, v in load_truth_masks(root, r["experiment"], int(r["plate"]), r["well"],
                                                        int(r["site"])).items()} for r in rows]
    return [{"cells": segment_cells(dataset.raw_image(p)) > 0} for p in positions]


def gradcam_localisation(model, dataset, root, positions, *, layer: str, masks: str = "auto",
                         device: str | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Grad-CAM of each site for its own label, scored by :func:`localisation_table` against each planted
    mask of :data:`MASK_KINDS` (the synthetic ground truth under ``root``) or, without one, against the
    segmented cells.

    Args:
        masks: ``truth``, ``segmentation`` or ``auto`` (the truth where ``root`` has it), as in
            :func:`rxlib.explain.gradcamo.grad_camo_dataset`.

    Returns:
        One row per site and mask: ``site_id``, ``cell_type``, ``label``, ``mask``, ``source`` (truth or
        segmentation), ``mask_fraction`` and the three metrics (NaN where the mask is empty).
    """
    from rxlib.explain.cam import grad_cam
    from rxlib.explain.gradcamo import resolve_masks
    from rxlib.explain.sites import site_batch
    from rxlib.train.loop import on_device

    source = resolve_masks(root, masks)
    positions = [int(p) for p in positions]
    table = dataset.table.iloc[positions].reset_index(drop=True)
    maps = []
    with on_device(model, device) as target:
        for start in range(0, len(positions), batch_size):
            batch = site_batch(dataset, positions[start:start + batch_size])
            maps.append(grad_cam(model, batch["image"].to(target), batch["cell_type"].to(target),
                                 batch["label"].tolist(), layer=layer, upsample=True).cpu().numpy())
    maps = np.concatenate(maps)
    site_masks = _site_masks(dataset, root, positions, source)
    frames = []
    for kind in [k for k in MASK_KINDS if k in site_masks[0]]:
        found = localisation_table(maps, np.stack([m[kind] for m in site_masks]), keys=table["site_id"].tolist())
        frames.append(found.rename(columns={"key": "site_id"}).assign(
            cell_type=table["cell_type"].to_numpy(), label=table["label"].to_numpy(), mask=kind, source=source))
    out = pd.concat(frames, ignore_index=True)
    return out[["site_id", "cell_type", "label", "mask", "source", "mask_fraction", *LOCALISATION_METRICS]]
