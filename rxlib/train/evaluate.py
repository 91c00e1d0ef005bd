"""Held-out evaluation of a trained model: accuracy per cell type, the control sanity check of
section 2.2, and how much a training curve oscillates (section 4.3).

All functions take predictions or histories in and give tables out; nothing is plotted here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from rxlib.models import RxNet
from rxlib.train.loop import EVAL_BATCH_SIZE, TrainConfig, predict

#: Columns of the metadata table carried into the predictions table.
_META = ("site_id", "experiment", "plate", "well", "cell_type", "well_type", "label")


def predictions_table(model: RxNet, dataset: Dataset, *, batch_size: int = 64, device: str | None = None,
                      num_workers: int = 0, amp_dtype: str | None = None, channels_last: bool = False) -> pd.DataFrame:
    """One row per item of ``dataset`` (which must have a ``table`` attribute, as RxRx1Dataset does):
    its metadata, both heads' predicted class, and the softmax head's top-1 probability and
    probability of the true class.

    The forward passes are :func:`rxlib.train.loop.predict`'s: batched, on ``device`` (None: where the
    model is), with ``num_workers`` loader workers and the ``amp_dtype`` autocast on CUDA. After
    training, :func:`held_out_predictions` passes the run's settings.
    """
    if not hasattr(dataset, "table"):
        raise TypeError(f"{type(dataset).__name__} has no 'table' attribute with the metadata of its items")
    out = predict(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers,
                  amp_dtype=amp_dtype, channels_last=channels_last)
    probs = torch.softmax(torch.from_numpy(out["logits"]), dim=1).numpy()
    frame = dataset.table.iloc[out["index"]][[c for c in _META if c in dataset.table.columns]].reset_index(drop=True)
    labels = out["label"]
    frame["pred_softmax"] = out["logits"].argmax(axis=1)
    frame["pred_arc"] = out["cosine"].argmax(axis=1)
    frame["top1_prob"] = probs.max(axis=1)
    valid = (labels >= 0) & (labels < probs.shape[1])
    frame["prob_true"] = np.where(valid, probs[np.arange(len(labels)), np.clip(labels, 0, probs.shape[1] - 1)], np.nan)
    return frame


def held_out_predictions(model: RxNet, dataset: Dataset, config: TrainConfig) -> pd.DataFrame:
    """:func:`predictions_table` with a training run's settings: on ``config.device``, with its loader
    workers, autocast dtype and memory layout, in batches of ``max(EVAL_BATCH_SIZE, config.batch_size)``."""
    return predictions_table(model, dataset, batch_size=max(EVAL_BATCH_SIZE, config.batch_size), device=config.device,
                             num_workers=config.num_workers, amp_dtype=config.amp_dtype,
                             channels_last=config.channels_last)


def accuracy_by_cell_type(predictions: pd.DataFrame) -> pd.DataFrame:
    """Top-1 accuracy of both heads per cell type and over all labelled items (row ``all``).

    Columns: cell_type, n, n_classes, chance (1 / classes present), acc_softmax, acc_arc.
    """
    labelled = predictions[predictions["label"] >= 0]
    if labelled.empty:
        raise ValueError("no labelled predictions to score")

    def row(name: str, frame: pd.DataFrame) -> dict:
        k = frame["label"].nunique()
        return {"cell_type": name, "n": len(frame), "n_classes": k, "chance": 1.0 / k,
                "acc_softmax": float((frame["pred_softmax"] == frame["label"]).mean()),
                "acc_arc": float((frame["pred_arc"] == frame["label"]).mean())}

    rows = [row(c, f) for c, f in labelled.groupby("cell_type", sort=True)]
    rows.append(row("all", labelled))
    return pd.DataFrame(rows)


def control_confidence(predictions: pd.DataFrame) -> pd.DataFrame:
    """The sanity check of section 2.2: a model that learnt the perturbations should be far less sure
    of a negative control (untreated, no phenotype) than of a positive control (a strong one).

    Columns: well_type, n, mean_top1_prob, mean_prob_true, accuracy (softmax head).
    """
    rows = []
    for well_type in ("negative_control", "positive_control", "treatment"):
        frame = predictions[predictions["well_type"] == well_type]
        if frame.empty:
            continue
        rows.append({"well_type": well_type, "n": len(frame), "mean_top1_prob": float(frame["top1_prob"].mean()),
                     "mean_prob_true": float(frame["prob_true"].mean()),
                     "accuracy": float((frame["pred_softmax"] == frame["label"]).mean())})
    return pd.DataFrame(rows)


def oscillation(history: pd.DataFrame, column: str, last: int | None = None) -> float:
    """Mean absolute epoch-to-epoch change of ``column`` (over the ``last`` epochs only, if given).

    A stable curve that converges scores near 0; one that jumps around scores high.
    """
    values = history[column].to_numpy(dtype=float)
    if last is not None:
        values = values[-last:]
    if len(values) < 2:
        return float("nan")
    return float(np.mean(np.abs(np.diff(values))))


def back_and_forth(history: pd.DataFrame, column: str, last: int | None = None) -> float:
    """The part of :func:`oscillation` that is not progress: (total path - |net change|) / steps.

    Zero for a curve that only ever moves one way (however fast); positive only for reversals, so a
    curve that improves quickly is not mistaken for one that oscillates.
    """
    values = history[column].to_numpy(dtype=float)
    if last is not None:
        values = values[-last:]
    if len(values) < 2:
        return float("nan")
    steps = np.diff(values)
    return float((np.abs(steps).sum() - abs(values[-1] - values[0])) / len(steps))


def oscillation_table(histories: dict[str, pd.DataFrame], columns=("val_loss", "val_acc_softmax", "val_acc_arc"),
                      last: int | None = None) -> pd.DataFrame:
    """:func:`oscillation` of each column for each named run (one row per run)."""
    rows = []
    for name, history in histories.items():
        row = {"run": name}
        for column in columns:
            row[f"osc_{column}"] = oscillation(history, column, last)
        rows.append(row)
    return pd.DataFrame(rows)


def final_accuracy_table(results: dict) -> pd.DataFrame:
    """One row per named :class:`~rxlib.train.registry.TrainedModel`: held-out accuracy of both heads
    over all cell types and per cell type (softmax head), chance, and the control check."""
    rows = []
    for name, result in results.items():
        acc = result.accuracy.set_index("cell_type")
        controls = result.controls.set_index("well_type")["mean_top1_prob"]
        row = {"run": name, "arch": result.config.train["arch"], "loss": result.config.train["loss"],
               "cutmix": result.config.train["cutmix"], "pseudo_label": result.config.train["pseudo_label"],
               "epochs": result.config.train["epochs"],
               "acc_softmax": acc.loc["all", "acc_softmax"], "acc_arc": acc.loc["all", "acc_arc"],
               "chance": acc.loc["all", "chance"]}
        for cell_type in acc.index.drop("all"):
            row[f"acc_{cell_type}"] = acc.loc[cell_type, "acc_softmax"]
        row["top1_prob_negative_control"] = controls.get("negative_control", np.nan)
        row["top1_prob_positive_control"] = controls.get("positive_control", np.nan)
        row["train_seconds"] = float(result.history["seconds"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def trained_head(loss: str) -> str:
    """The head a loss mode trains and is scored by: ``arc`` for arc-margin alone, else ``softmax``
    (softmax alone leaves the arc head untrained; the composite loss weights softmax 1 - c = 0.8)."""
    return "arc" if loss == "arc" else "softmax"


def loss_stability_table(results: dict, last: int | None = None) -> pd.DataFrame:
    """Section 4.3's claim in numbers: per run, the oscillation (mean absolute epoch-to-epoch change,
    ``osc_*``) of the held-out accuracy of the head its loss trains, and of the training and held-out
    loss of that head relative to its mean (so that losses of different scales compare); the same with
    the net progress removed (``reversal_*``, :func:`back_and_forth`); and the final held-out accuracy.

    Args:
        results: ``{run name: TrainedModel}``.
        last: score only the last epochs (None: all).
    """
    rows = []
    for name, result in results.items():
        history, head = result.history, trained_head(result.config.train["loss"])
        acc_col, loss_col = f"acc_{head}", f"loss_{head}"
        mean_val = float(history[f"val_{loss_col}"].mean())
        mean_train = float(history[f"train_{loss_col}"].mean())
        rows.append({
            "run": name, "loss": result.config.train["loss"], "head": head,
            "osc_val_acc": oscillation(history, f"val_{acc_col}", last),
            "osc_val_loss_rel": oscillation(history, f"val_{loss_col}", last) / mean_val,
            "osc_train_loss_rel": oscillation(history, f"train_{loss_col}", last) / mean_train,
            "reversal_val_acc": back_and_forth(history, f"val_{acc_col}", last),
            "reversal_val_loss_rel": back_and_forth(history, f"val_{loss_col}", last) / mean_val,
            "final_val_acc": float(history[f"val_{acc_col}"].iloc[-1]),
            "best_val_acc": float(history[f"val_{acc_col}"].max()),
            "held_out_acc": float(result.accuracy.set_index("cell_type").loc["all", f"acc_{head}"]),
        })
    return pd.DataFrame(rows)


def chance_level(runs, name: str | None = None) -> float:
    """Chance accuracy (1 / classes present) on the held-out sites of a
    :class:`~rxlib.train.registry.TrainedModel`, or of run ``name`` of a dict of them (default: the
    first; the runs of one comparison are scored on the same sites)."""
    run = (runs[name] if name is not None else next(iter(runs.values()))) if isinstance(runs, dict) else runs
    return float(run.accuracy.set_index("cell_type").loc["all", "chance"])


def histories(runs: dict) -> dict[str, pd.DataFrame]:
    """``{label: history}`` of ``{label: TrainedModel}``, for :func:`rxlib.plotting.training.training_curves`."""
    return {name: run.history for name, run in runs.items()}


def loss_comparison_table(results: dict) -> pd.DataFrame:
    """Notebook 03's table: :func:`loss_stability_table` beside :func:`final_accuracy_table`, one row per run."""
    return loss_stability_table(results).merge(final_accuracy_table(results).drop(columns=["loss"]), on="run")


def correct_per_site(predictions: pd.DataFrame, head: str = "softmax") -> pd.DataFrame:
    """Per labelled site: ``correct`` (1.0 when ``head`` predicts the label, else 0.0) and its
    ``experiment``, indexed by ``site_id`` (the units of a paired accuracy comparison)."""
    labelled = predictions[predictions["label"] >= 0]
    correct = (labelled[f"pred_{head}"] == labelled["label"]).astype(float)
    return pd.DataFrame({"correct": correct.to_numpy(), "experiment": labelled["experiment"].to_numpy()},
                        index=pd.Index(labelled["site_id"].to_numpy(), name="site_id"))


def controls_table(runs: dict) -> pd.DataFrame:
    """The control check of section 2.2 of several runs: :func:`control_confidence` of each
    ``{name: TrainedModel}``, one block of rows per run with its ``model`` column first."""
    frames = [run.controls.assign(model=name) for name, run in runs.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["model"] + [c for c in table.columns if c != "model"]]
