"""The trained-model registry: train a configuration once, reuse it everywhere.

:func:`train_or_load` keys each trained model by a hash of its :class:`~rxlib.train.profiles.RunConfig`
(everything that determines the weights) and of the data root's metadata, and keeps it under
``rxlib.config.cache_dir()/models/<key>/``::

    run.json          the resolved config, the data root and its fingerprint
    history.csv       one row per epoch (see rxlib.train.loop)
    checkpoints/      per-epoch checkpoints (a killed run resumes from the newest)
    model.pt          the final weights (rxlib.train.load_trained_model reads it)
    accuracy.csv      held-out accuracy per cell type; controls.csv: the control check
    predictions.csv   the held-out predictions (rxlib.train.evaluate.predictions_table)

A second call with the same config and data loads the model instead of training it again; a call
interrupted mid-training resumes. Notebooks ask for their models by name through :mod:`rxlib.plan`
(``ctx.models("04")``, ``ctx.model("main")``), which builds the configs and calls :func:`train_or_load`;
later notebooks get the same models back without training. Called directly::

    from rxlib.train.profiles import run_config
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

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock
from torch.utils.data import Dataset

from rxlib import config as paths
from rxlib.io import atomic_path, write_csv
from rxlib.models import RxNet
from rxlib.data.splits import HeldOutSplit, held_out_split
from rxlib.train.evaluate import (
    accuracy_by_cell_type,
    control_confidence,
    held_out_predictions,
)
from rxlib.train.loop import load_trained_model, train
from rxlib.train.profiles import RunConfig, load_config

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
    text = json.dumps({"config": resolved.identity(), "data": data_fingerprint(data_root)}, sort_keys=True, default=str)
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

    The subset of a comparison budget (``data.plates``, see :data:`rxlib.train.profiles.BUDGETS`) is
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
    """The registry folder of a completely trained and evaluated model of ``config``, or None."""
    folder = models_dir() / model_key(config, data_root)
    return folder if (folder / "model.pt").is_file() and (folder / "predictions.csv").is_file() else None


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
        if find_model(resolved, data_root) is None:
            return train_run(resolved, data_root, folder, progress=progress)
    return TrainedModel(load_trained_model(folder / "model.pt"), resolved, folder,
                        pd.read_csv(folder / "history.csv"), pd.read_csv(folder / "predictions.csv"), False)


def resolve_run(config_path: str | os.PathLike, data: str | None = None, out: str | None = None,
                device: str | None = None) -> tuple[RunConfig, str, Path]:
    """Read a JSON run config and apply command-line overrides: returns (config, data_root, out_dir).

    ``out_dir`` defaults to the config's ``out_dir``, else the registry folder of the config and data.

    Raises:
        ValueError: neither ``data`` nor the config names a data root.
    """
    config = load_config(config_path)
    data_root = data or config.data_root
    if not data_root:
        raise ValueError(f"{config_path}: no data_root in the config and no --data given")
    if device:
        config.train["device"] = device
    out_dir = Path(out or config.out_dir or models_dir() / model_key(config, data_root))
    return config, str(data_root), out_dir


def cpu_threads() -> int:
    """Threads for CPU training and explanation: ``RXLIB_TRAIN_THREADS`` if set, else 1.

    One thread, whatever the machine: float results depend on the thread count, so a fixed count gives
    the same seed the same model on any machine and any load; and torch's threads spin-wait on each
    other, so on a machine shared with other jobs two threads ran 5-10 times slower per step than one.
    Cores are used by running models and notebooks side by side instead (:mod:`rxlib.train.pool`,
    :func:`rxlib.reproduce.reproduce`). On a large idle machine, ``RXLIB_TRAIN_THREADS`` trades that
    reproducibility across thread counts for speed.
    """
    value = os.environ.get("RXLIB_TRAIN_THREADS")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"RXLIB_TRAIN_THREADS must be a positive integer, got {value!r}")
        return int(value)
    return 1


@contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_run(config: RunConfig, data_root: str | os.PathLike, folder: str | os.PathLike, *,
              progress: bool = False) -> TrainedModel:
    """Train ``config`` on ``data_root`` into ``folder`` (resuming from its newest checkpoint), then
    write the held-out predictions, ``accuracy.csv`` and ``controls.csv`` there.

    This is what ``rxlib train --config FILE`` runs; :func:`train_or_load` runs it into the registry.
    On the CPU it uses :func:`cpu_threads` threads (restored afterwards).
    """
    with _torch_threads(cpu_threads() if config.train.get("device", "cpu") == "cpu" else torch.get_num_threads()):
        return _train_run(config, data_root, folder, progress)


def _train_run(config: RunConfig, data_root, folder, progress: bool) -> TrainedModel:
    from rxlib.data import read_metadata
    from rxlib.data.availability import check_trainable

    data_root, folder = Path(data_root).resolve(), Path(folder)
    check_trainable(data_root, read_metadata(data_root))  # one line before any folder or store is made
    config = config.resolved(data_root)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": folder.name, "config": config.to_dict(), "data_fingerprint": data_fingerprint(data_root)}
    with atomic_path(folder / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, default=str) + "\n")
    split = config_split(config)
    train_config = config.train_config()
    result = train(train_config, split.train, split.val, split.unlabelled if train_config.pseudo_label else None,
                   out_dir=folder, resume=True, progress=progress)
    # predictions on the training device with its autocast; the model handed to notebooks lives on the CPU
    predictions = held_out_predictions(result.model, split.val, train_config)
    model = result.model.cpu().eval()
    trained = TrainedModel(model, config, folder, result.history, predictions, True)
    write_csv(folder / "accuracy.csv", trained.accuracy)
    write_csv(folder / "controls.csv", trained.controls)
    write_csv(folder / "predictions.csv", predictions)  # last: its presence marks a complete run
    return trained


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
