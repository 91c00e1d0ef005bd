"""The trained-model registry: train a configuration once, reuse it everywhere.

:func:`train_or_load` keys each trained model by a hash of its :class:`~rxlib.profiles.RunConfig`
(everything that determines the weights) and of the data root's metadata, and keeps it under
``rxlib.config.cache_dir()/models/<key>/``, the folder :func:`rxlib.train.run.train_run` (the one
training run, also behind ``rxlib train``) writes: ``run.json``, ``history.csv``, ``checkpoints/``,
``model.pt``, ``accuracy.csv``, ``controls.csv`` and ``predictions.csv`` (see :mod:`rxlib.train.run`).

A second call with the same config and data loads the model instead of training it again; a call
interrupted mid-training resumes. Notebooks ask for their models by name through :mod:`rxlib.plan`
(``ctx.models("04")``, ``ctx.model("main")``), which builds the configs and calls :func:`train_or_load`;
later notebooks get the same models back without training. Called directly::

    from rxlib.profiles import run_config
    from rxlib.train.registry import train_or_load

    composite = train_or_load(run_config(ctx.profile), ctx.data_root)                  # loss='composite'
    with_pl = train_or_load(run_config(ctx.profile, pseudo_label=True), ctx.data_root)
    both = train_or_load(run_config(ctx.profile, cutmix=True, pseudo_label=True), ctx.data_root)
    softmax_only = train_or_load(run_config(ctx.profile, loss="softmax"), ctx.data_root)
    resnet = train_or_load(run_config(ctx.profile, arch="resnet18"), ctx.data_root)
    composite.model        # RxNet in eval mode on the CPU
    composite.split()      # the train / held-out datasets it was trained and evaluated on

The models notebooks 02-04 train in the smoke profile (``run_config('smoke', ...)`` overrides):
``{}`` (the composite-loss tiny DenseNet, no CutMix, no pseudo-labels: 02's DenseNet, 03's composite,
04's baseline), ``{'arch': 'resnet18'}``, ``{'loss': 'softmax'}``, ``{'loss': 'arc'}``,
``{'cutmix': True}``, ``{'pseudo_label': True}``, ``{'cutmix': True, 'pseudo_label': True}``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock
from torch.utils.data import Dataset

from rxlib import config as paths
from rxlib.data.splits import HeldOutSplit, held_out_split
from rxlib.io import atomic_path, write_csv
from rxlib.models import RxNet
from rxlib.profiles import RunConfig
from rxlib.train.evaluate import accuracy_by_cell_type, control_confidence
from rxlib.train.loop import load_trained_model

#: Files whose bytes identify a data root's content (whichever exist).
_FINGERPRINT_FILES = ("metadata.csv", "truth/params.json", "truth/classes.csv", "train.csv", "test.csv",
                      "train_controls.csv", "test_controls.csv")


def models_dir() -> Path:
    """Folder of the registry (``cache_dir()/models``; set ``RXLIB_CACHE`` to move it)."""
    return paths.cache_dir() / "models"


def data_fingerprint(data_root: str | os.PathLike) -> str:
    """16 hex digits of the SHA-256 of the data root's metadata files (not the images: a data set
    regenerated with the same parameters gets the same fingerprint wherever it lies).

    Raises:
        FileNotFoundError: none of the metadata files exists (names the folder).
    """
    root = Path(data_root)
    digest, found = hashlib.sha256(), False
    for name in _FINGERPRINT_FILES:
        path = root / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
            found = True
    if not found:
        raise FileNotFoundError(f"{root}: no metadata to fingerprint (expected one of {_FINGERPRINT_FILES})")
    return digest.hexdigest()[:16]


def model_key(config: RunConfig, data_root: str | os.PathLike) -> str:
    """The registry key: 16 hex digits over the resolved config's identity and the data fingerprint."""
    resolved = config.resolved(data_root)
    identity = {"config": resolved.identity(), "data": data_fingerprint(data_root)}
    train = resolved.train
    if train.get("channels_last", True) and not str(train.get("device", "cpu")).startswith("cuda"):
        # channels-last took effect on the CPU only from 2026-12-02 (it changes the floats): models trained
        # before under the same settings were trained in the default format, so they get other keys
        identity["cpu_memory_format"] = "channels_last"
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TrainedModel:
    """A model from the registry with its history and held-out evaluation.

    Attributes:
        model: the trained :class:`~rxlib.models.RxNet`, eval mode, on the CPU (the held-out predictions
            were made on the training device before it was moved there).
        config: the resolved :class:`RunConfig`.
        folder: its registry folder.
        history: per-epoch losses and accuracies (``history.csv``).
        predictions: held-out predictions (:func:`rxlib.train.evaluate.predictions_table`).
        trained_now: whether this call trained it (False: loaded from the registry).
    """

    model: RxNet
    config: RunConfig
    folder: Path
    history: pd.DataFrame
    predictions: pd.DataFrame
    trained_now: bool

    @property
    def accuracy(self) -> pd.DataFrame:
        """Held-out accuracy per cell type and overall (:func:`rxlib.train.evaluate.accuracy_by_cell_type`)."""
        return accuracy_by_cell_type(self.predictions)

    @property
    def controls(self) -> pd.DataFrame:
        """Mean top-1 probability on negative vs positive controls (:func:`rxlib.train.evaluate.control_confidence`)."""
        return control_confidence(self.predictions)

    def split(self) -> HeldOutSplit:
        """The datasets this model was trained and evaluated on (read again; cached per process)."""
        return config_split(self.config)


class PlateSubset(Dataset):
    """The items of a site dataset (one with a ``table``) that lie on some plates; ``index`` renumbered.

    The subset of a comparison budget (``data.plates``, see :data:`rxlib.profiles.BUDGETS`) is
    applied here, where the training table is built, so that the data layer needs no notion of it.
    """

    def __init__(self, dataset: Dataset, plates) -> None:
        if not hasattr(dataset, "table"):
            raise TypeError(f"{type(dataset).__name__} has no 'table' attribute to select plates from")
        keep = dataset.table["plate"].astype(int).isin([int(p) for p in plates]).to_numpy()
        self.dataset = dataset
        self.positions = keep.nonzero()[0]
        self.table = dataset.table.iloc[self.positions].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[int(self.positions[index])])
        item["index"] = index
        return item


def config_split(config: RunConfig) -> HeldOutSplit:
    """The train / held-out / unlabelled datasets of a resolved ``config``, with its ``data.plates``
    subset applied (after :func:`held_out_split`, which reads the whole data root)."""
    data = dict(config.data)
    plates = data.pop("plates", None)
    split = held_out_split(config.data_root, **data)
    if plates is None:
        return split
    parts = {name: PlateSubset(getattr(split, name), plates) for name in ("train", "val", "unlabelled")}
    for name in ("train", "val"):
        if not len(parts[name]):
            raise ValueError(f"{config.data_root}: no labelled sites on plates {plates} in the {name} split")
    return HeldOutSplit(parts["train"], parts["val"], parts["unlabelled"], split.table)


def find_model(config: RunConfig, data_root: str | os.PathLike) -> Path | None:
    """The registry folder of a completely trained and evaluated model of ``config``, or None.

    A run without the held-out pass after each epoch (``train.validate_each_epoch`` False) has the same
    weights as the run with it, so a complete model of that run serves it too (e.g. a main model trained
    before the setting existed: no GPU-hours spent on it again)."""
    folder = models_dir() / model_key(config, data_root)
    if (folder / "model.pt").is_file() and (folder / "predictions.csv").is_file():
        return folder
    if config.train.get("validate_each_epoch", True) is False:
        return find_model(dataclasses.replace(config, train={**config.train, "validate_each_epoch": True}), data_root)
    return None


def train_or_load(config: RunConfig, data_root: str | os.PathLike, *, progress: bool = False,
                  device: str | None = None) -> TrainedModel:
    """Load the model of ``config`` trained on ``data_root`` from the registry, or train, evaluate and
    register it (resuming a killed run from its newest checkpoint).

    Args:
        config: the run (e.g. ``run_config('smoke', loss='arc')``); its ``out_dir`` is ignored.
        data_root: the data root; training uses its ``train`` experiments, evaluation its ``test`` ones.
        progress: tqdm progress bars while training.
        device: override ``train.device`` (it does not change the key).
    """
    data_root = Path(data_root).resolve()
    resolved = config.resolved(data_root)
    if device is not None:
        resolved.train["device"] = device
    folder = models_dir() / model_key(resolved, data_root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{folder.name}.lock"):  # two runs asking for one model: one trains it
        found = find_model(resolved, data_root)
        if found is None:
            from rxlib.train.run import train_run  # the run builds on this module (keys, split, TrainedModel)

            return train_run(resolved, data_root, folder, progress=progress)
    folder = found
    return TrainedModel(load_trained_model(folder / "model.pt"), resolved, folder,
                        pd.read_csv(folder / "history.csv"), pd.read_csv(folder / "predictions.csv"), False)


def registry_table() -> pd.DataFrame:
    """Every registered model: key, profile, arch, loss, cutmix, pseudo_label, epochs, data root, complete."""
    rows = []
    for run in sorted(models_dir().glob("*/run.json")):
        record = json.loads(run.read_text())
        train_cfg = record["config"]["train"]
        rows.append({"key": record["key"], "profile": record["config"]["profile"], "arch": train_cfg.get("arch"),
                     "loss": train_cfg.get("loss"), "cutmix": train_cfg.get("cutmix"),
                     "pseudo_label": train_cfg.get("pseudo_label"), "epochs": train_cfg.get("epochs"),
                     "data_root": record["config"]["data_root"],
                     "complete": (run.parent / "predictions.csv").is_file()})
    return pd.DataFrame(rows, columns=["key", "profile", "arch", "loss", "cutmix", "pseudo_label", "epochs",
                                       "data_root", "complete"])


def cached_table(name: str, identity: dict, data_root: str | os.PathLike, compute) -> pd.DataFrame:
    """A table computed once per (``name``, ``identity``, data set) and kept in the registry folder.

    For cheap derived results that are not :class:`RunConfig` models (e.g. the per-class DCMIX weights
    of notebook 08): ``models_dir()/<name>-<key>/table.csv`` with ``identity.json`` beside it, where
    ``key`` hashes ``identity`` (everything that determines the result) and the data fingerprint.

    Args:
        name: a short name (letters, digits, ``_`` and ``-``).
        identity: JSON-serialisable settings of the computation.
        data_root: the data set it is computed on.
        compute: a callable returning the DataFrame (its index is stored and restored).

    Returns:
        The DataFrame, computed now or read back.
    """
    if not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise ValueError(f"invalid cache name {name!r}: use letters, digits, '_' and '-'")
    text = json.dumps({"name": name, "identity": identity, "data": data_fingerprint(data_root)},
                      sort_keys=True, default=str)
    folder = models_dir() / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    path = folder / "table.csv"
    if path.is_file():
        frame = pd.read_csv(path)
        index = json.loads((folder / "identity.json").read_text()).get("index") or []
        return frame.set_index(index) if index else frame
    frame = compute()
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"compute for {name!r} returned {type(frame).__name__}, not a DataFrame")
    folder.mkdir(parents=True, exist_ok=True)
    index = [n for n in frame.index.names if n is not None]
    with atomic_path(folder / "identity.json") as tmp:
        Path(tmp).write_text(json.dumps({"name": name, "identity": identity, "index": index,
                                         "data_root": str(data_root)}, indent=2, default=str) + "\n")
    write_csv(path, frame.reset_index() if index else frame)
    return frame


def models_of(runs: dict) -> dict:
    """``{label: RxNet}`` of ``{label: TrainedModel}``: the networks alone, for the explanation functions."""
    return {name: run.model for name, run in runs.items()}


def provenance_table(runs: dict) -> pd.DataFrame:
    """Where each of ``{label: TrainedModel}`` came from: ``run``, ``source`` (``'trained now'`` or
    ``'loaded from the registry'``) and its registry ``folder`` name."""
    return pd.DataFrame([{"run": name, "source": "trained now" if run.trained_now else "loaded from the registry",
                          "folder": run.folder.name} for name, run in runs.items()], columns=["run", "source", "folder"])
