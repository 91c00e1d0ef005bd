"""The cheating model: trained where a spurious, label-tied cue sits in the background of the
training images (Grad-CAMO's warning, Ma et al. 2024), it should score a lower Grad-CAMO than the
model trained on clean images, and lose accuracy when the cue is gone.

The cue data set is the synthetic data set of the same profile and seed with ``spurious_cue=True``
(:func:`rxlib.synth.generate`): identical sites, except that every training site has a grating in its
background pixels of channel w6 whose orientation encodes the class; held-out sites never have it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from rxlib import config as paths

#: Grey levels of the cue grating. The generator's default (6) is learnt only slowly by the tiny
#: DenseNet of the smoke profile (after 6 epochs it owed 16 points of training accuracy to the cue);
#: a clearly visible cue makes the cheating model cheat within the notebook's budget.
CUE_AMPLITUDE = 24.0


def cue_data_root(profile: str = "smoke", seed: int = 0, *, cue_amplitude: float = CUE_AMPLITUDE,
                  workers: int | None = None) -> Path:
    """The spurious-cue twin of the synthetic data set of ``profile`` and ``seed``, generated once.

    Same profile and seed, so the same sites and cells; the training sites carry the cue. It lives
    next to :func:`rxlib.config.synthetic_root` as ``<profile>-seed<seed>-cue<amplitude>`` (under
    ``cache_dir()/synthetic``, moved by ``RXLIB_CACHE``).

    Args:
        profile: a synthetic profile (:data:`rxlib.synth.PROFILES`: ``smoke``, ``cpu``, ``rxrx1``).
        seed: the seed of the clean data set.
        cue_amplitude: grey levels of the cue (the generator's ``cue_amplitude``).
        workers: processes for the generation (default: all cores).
    """
    from rxlib.synth import PROFILES, generate

    if profile not in PROFILES:
        raise ValueError(f"no synthetic profile {profile!r} for the cue data set; known: {sorted(PROFILES)}")
    out = paths.cache_dir() / "synthetic" / f"{profile}-seed{seed}-cue{cue_amplitude:g}"
    if (out / "metadata.csv").is_file():
        return out
    return generate(out, profile=profile, seed=seed, spurious_cue=True, progress=False,
                    workers=workers or os.cpu_count() or 1, cue_amplitude=float(cue_amplitude))


def cue_sites(root: str | Path) -> pd.DataFrame:
    """``site_id`` and ``cue_drawn`` of every site of a synthetic data set (from ``truth/sites.csv``).

    Raises:
        FileNotFoundError: not a synthetic data set (names the missing file).
    """
    path = Path(root) / "truth" / "sites.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: the cue is known only for synthetic data sets")
    return pd.read_csv(path, usecols=["site_id", "cue_drawn"])


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


def cheating_verdict(table: pd.DataFrame, *, clean: str = "clean", cheating: str = "cheating",
                     column: str = "grad_camo_cue_sites", margin: float = 0.02) -> str:
    """A sentence saying whether the cheating model scores a lower Grad-CAMO than the clean one.

    Args:
        table: :func:`cheating_table` output.
        margin: the smallest difference counted as lower.
    """
    values = table.set_index("model")[column]
    diff = float(values[clean] - values[cheating])
    holds = diff >= margin
    return (f"Grad-CAMO ({column}): clean {values[clean]:.3f}, cheating {values[cheating]:.3f}, difference "
            f"{diff:+.3f}: the cheating model {'does' if holds else 'does NOT'} put measurably less attention "
            f"on the cells (margin {margin}).")


def cheating_measurements(models: dict[str, object], clean_root: str | Path, cue_root: str | Path, *,
                          layer: str, n_sites: int = 192, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy with and without the cue and Grad-CAMO of each model, for :func:`cheating_table`.

    Args:
        models: name -> RxNet (e.g. ``{'clean': ..., 'cheating': ...}``).
        clean_root: the clean synthetic data set.
        cue_root: its spurious-cue twin (:func:`cue_data_root`); its training sites must be the clean
            set's training sites (same profile and seed), checked by site id.
        layer: Grad-CAM layer for Grad-CAMO.
        n_sites: sites (spread over cell types) scored by Grad-CAMO in each set.
        seed: seeds the choice of sites.

    Returns:
        ``(table, per_image)``: :func:`cheating_table` of the models, and the per-image Grad-CAMO
        (:func:`rxlib.explain.gradcamo.grad_camo_dataset` rows with ``model`` and ``sites`` columns;
        ``sites`` is ``cue`` for training sites carrying the cue, ``held-out`` for the held-out ones).

    Raises:
        ValueError: the two data sets do not hold the same training sites, or no site carries the cue.
    """
    from rxlib.explain.gradcamo import grad_camo_dataset
    from rxlib.data.splits import split_sites
    from rxlib.explain.sites import sample_positions
    from rxlib.train.evaluate import predictions_table

    with_cue = split_sites(cue_root, "train")
    without_cue = split_sites(clean_root, "train")
    held_out = split_sites(clean_root, "test")
    if with_cue.table["site_id"].tolist() != without_cue.table["site_id"].tolist():
        raise ValueError(f"{cue_root} and {clean_root} hold different training sites; generate the cue set "
                         "with the clean set's profile and seed")
    drawn = with_cue.table[["site_id"]].merge(cue_sites(cue_root), on="site_id", how="left")["cue_drawn"]
    keep = drawn.fillna(False).to_numpy(bool).nonzero()[0]
    if len(keep) == 0:
        raise ValueError(f"no training site of {cue_root} carries the cue")
    with_cue, without_cue = with_cue.subset(keep), without_cue.subset(keep)
    cue_positions = sample_positions(with_cue.table, n_sites, seed=seed)
    held_positions = sample_positions(held_out.table, n_sites, seed=seed)
    rows, frames = {}, []
    for name, model in models.items():
        cue_scores = grad_camo_dataset(model, with_cue, cue_root, cue_positions, layer=layer).assign(model=name, sites="cue")
        held_scores = grad_camo_dataset(model, held_out, clean_root, held_positions, layer=layer).assign(
            model=name, sites="held-out")
        frames += [cue_scores, held_scores]
        rows[name] = {"acc_train_with_cue": accuracy(predictions_table(model, with_cue)),
                      "acc_train_without_cue": accuracy(predictions_table(model, without_cue)),
                      "acc_held_out": accuracy(predictions_table(model, held_out)),
                      "grad_camo_cue_sites": float(cue_scores["grad_camo"].mean()),
                      "grad_camo_held_out": float(held_scores["grad_camo"].mean()),
                      "cell_fraction_cue_sites": float(cue_scores["cell_fraction"].mean()),
                      "cell_fraction_held_out": float(held_scores["cell_fraction"].mean()),
                      "layer": layer, "n_sites": len(cue_positions)}
    return cheating_table(rows), pd.concat(frames, ignore_index=True)


def paired_difference(per_image: pd.DataFrame, *, clean: str = "clean", cheating: str = "cheating",
                      sites: str = "cue", column: str = "grad_camo") -> dict[str, float]:
    """Mean paired difference clean - cheating of ``column`` over the same sites, with its standard error
    and a two-sided p value (paired t test), so that "measurably lower" is a number.
    """
    from scipy.stats import ttest_rel

    part = per_image[per_image["sites"] == sites].pivot_table(index="site_id", columns="model", values=column)
    part = part[[clean, cheating]].dropna()
    diff = part[clean] - part[cheating]
    return {"sites": sites, "n": len(diff), "mean_difference": float(diff.mean()),
            "standard_error": float(diff.std(ddof=1) / len(diff) ** 0.5) if len(diff) > 1 else float("nan"),
            "p_value": float(ttest_rel(part[clean], part[cheating]).pvalue) if len(diff) > 1 else float("nan")}
