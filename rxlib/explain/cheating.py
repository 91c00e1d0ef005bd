"""The cheating model: trained where a spurious, label-tied cue sits in the background of the
training images (Grad-CAMO's warning, Ma et al. 2024), it should score a lower Grad-CAMO than the
model trained on clean images, and lose accuracy when the cue is gone.

The cue is drawn on the fly into the training sites of the very data set the clean model is trained
on (:mod:`rxlib.data.cue`: a grating in the background pixels of channel w6 whose orientation encodes
the class), so the comparison holds for the real RxRx1 as for the synthetic set; held-out sites never
carry it.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd


def accuracy(predictions: pd.DataFrame) -> float:
    """Top-1 accuracy of the softmax head over the labelled rows of a predictions table."""
    labelled = predictions[predictions["label"] >= 0]
    if labelled.empty:
        raise ValueError("no labelled predictions")
    return float((labelled["pred_softmax"] == labelled["label"]).mean())


def cheating_table(rows: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per model from measured numbers, with the drop in accuracy when the cue is removed.

    Args:
        rows: model name -> ``acc_train_with_cue`` (training sites carrying the cue),
            ``acc_train_without_cue`` (the same sites without it), ``acc_held_out`` (held-out
            experiments, never with the cue), ``grad_camo_cue_sites`` and ``grad_camo_held_out``
            (mean Grad-CAMO on those sites), and any further numbers.

    Returns:
        Columns ``model``, the given numbers and ``cue_dependence`` (``acc_train_with_cue -
        acc_train_without_cue``: accuracy owed to the cue).
    """
    frame = pd.DataFrame([{"model": name, **values} for name, values in rows.items()])
    if {"acc_train_with_cue", "acc_train_without_cue"} <= set(frame.columns):
        frame["cue_dependence"] = frame["acc_train_with_cue"] - frame["acc_train_without_cue"]
    return frame


def cued_training_sites(root: str | Path):
    """The labelled training sites of ``root`` as the cheating model saw them: with the class-coded cue
    of :mod:`rxlib.data.cue` (the same cue :func:`rxlib.data.splits.held_out_split` draws with
    ``cue=True``), not augmented."""
    from rxlib.data.cue import SpuriousCue
    from rxlib.data.splits import split_sites

    sites = split_sites(root, "train")
    return sites.with_cue(SpuriousCue.for_labels(sites.table["label"]))


def _on_plates(sites, plates):
    """The sites of ``plates`` (all for None), sharing storage, statistics and cue."""
    if plates is None:
        return sites
    keep = sites.table["plate"].astype(int).isin([int(p) for p in plates]).to_numpy().nonzero()[0]
    if len(keep) == 0:
        raise ValueError(f"no sites on plates {list(plates)} in {sites.root}")
    return sites.subset(keep)


class CheatingMeasurements(NamedTuple):
    """What :func:`cheating_measurements` returns: ``table`` (:func:`cheating_table`) and ``per_image``
    (Grad-CAMO per site, model and set of sites); unpacks as ``(table, per_image)``."""

    table: pd.DataFrame
    per_image: pd.DataFrame


def cheating_measurements(models: dict[str, object], root: str | Path, *, layer: str, n_sites: int = 192,
                          seed: int = 0, masks: str = "auto", device: str | None = None,
                          plates=None) -> CheatingMeasurements:
    """Accuracy with and without the cue and Grad-CAMO of each model, for :func:`cheating_table`.

    Args:
        models: name -> RxNet (e.g. ``{'clean': ..., 'cheating': ...}``).
        root: the data set both models were trained on (the cheating one with the cue).
        layer: Grad-CAM layer for Grad-CAMO.
        n_sites: sites (spread over cell types) scored by Grad-CAMO in each set.
        seed: seeds the choice of sites.
        masks: cell masks of Grad-CAMO (:func:`rxlib.explain.gradcamo.grad_camo_dataset`: ``auto`` takes
            the synthetic ground truth where it exists, else the segmentation of each site).
        device: where the predictions and Grad-CAM passes run (the configured ``train.device``; None:
            where each model is).
        plates: score only the sites of these plates (the comparison budget's ``data.plates`` the models
            were trained on; None: all).

    Returns:
        :class:`CheatingMeasurements` ``(table, per_image)``: :func:`cheating_table` of the models, and the per-image Grad-CAMO
        (:func:`rxlib.explain.gradcamo.grad_camo_dataset` rows with ``model`` and ``sites`` columns;
        ``sites`` is ``cue`` for training sites carrying the cue, ``held-out`` for the held-out ones).
    """
    from rxlib.data.splits import split_sites
    from rxlib.explain.gradcamo import grad_camo_dataset
    from rxlib.explain.sites import sample_positions
    from rxlib.train.evaluate import predictions_table

    without_cue = _on_plates(split_sites(root, "train"), plates)
    with_cue = _on_plates(cued_training_sites(root), plates)
    held_out = _on_plates(split_sites(root, "validation"), plates)
    cue_positions = sample_positions(with_cue.table, n_sites, seed=seed)
    held_positions = sample_positions(held_out.table, n_sites, seed=seed)
    rows, frames = {}, []
    for name, model in models.items():
        cue_scores = grad_camo_dataset(model, with_cue, root, cue_positions, layer=layer, masks=masks,
                                       device=device).assign(model=name, sites="cue")
        held_scores = grad_camo_dataset(model, held_out, root, held_positions, layer=layer, masks=masks,
                                        device=device).assign(model=name, sites="held-out")
        frames += [cue_scores, held_scores]
        rows[name] = {"acc_train_with_cue": accuracy(predictions_table(model, with_cue, device=device)),
                      "acc_train_without_cue": accuracy(predictions_table(model, without_cue, device=device)),
                      "acc_held_out": accuracy(predictions_table(model, held_out, device=device)),
                      "grad_camo_cue_sites": float(cue_scores["grad_camo"].mean()),
                      "grad_camo_held_out": float(held_scores["grad_camo"].mean()),
                      "cell_fraction_cue_sites": float(cue_scores["cell_fraction"].mean()),
                      "cell_fraction_held_out": float(held_scores["cell_fraction"].mean()),
                      "layer": layer, "masks": cue_scores["masks"].iloc[0], "n_sites": len(cue_positions)}
    return CheatingMeasurements(cheating_table(rows), pd.concat(frames, ignore_index=True))


def cue_site_cams(models: dict[str, object], root: str | Path, *, layer: str, n_sites: int = 3,
                  seed: int = 0) -> dict:
    """Grad-CAM of each model on the same few training sites carrying the cue (for its own class), laid
    out for :func:`rxlib.plotting.explain.plot_cam_grid`: one block of rows per model, in order.

    Args:
        models: name -> RxNet (e.g. ``{'clean': ..., 'cheating': ...}``).
        root: the data set the cue is drawn into (:func:`cued_training_sites`).
        n_sites: sites shown (spread over cell types, :func:`rxlib.explain.sites.sample_positions`).

    Returns:
        ``{'images': raw images (len(models) * n, C, H, W), 'cams': one map per image, 'titles':
        '<model>: <cell type>, class <label>'}``.
    """
    import numpy as np

    from rxlib.explain.cam import grad_cam
    from rxlib.explain.sites import sample_positions, site_batch

    sites = cued_training_sites(root)  # a lazy data set: only the sites shown are read
    shown = sample_positions(sites.table, n_sites, seed=seed)
    batch = site_batch(sites, shown)
    cams, titles = [], []
    for name, model in models.items():
        cams += list(grad_cam(model, batch["image"], batch["cell_type"], batch["label"].tolist(), layer=layer,
                              upsample=True, normalise=True))
        titles += [f"{name}: {sites.table['cell_type'][p]}, class {sites.table['label'][p]}" for p in shown]
    return {"images": np.concatenate([sites.raw_images(shown)] * len(models)), "cams": cams, "titles": titles}
