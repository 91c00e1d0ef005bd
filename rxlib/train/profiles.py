"""Named training profiles and the run configuration files of ``rxlib train --config FILE``.

A :class:`RunConfig` is everything that determines a trained model: the :class:`~rxlib.train.TrainConfig`
of the loop plus how the data are read (normalisation, augmentation, in memory or streamed). Two
profiles:

- ``smoke``: ``tiny_densenet`` on the 64x64 smoke synthetic set, 12 epochs of batch 32 on the CPU
  (about half a minute per model on 2 cores, images held in memory), composite loss, no CutMix, no
  pseudo-labels (the baseline; notebooks switch those on with :func:`run_config` overrides).
- ``paper``: DenseNet-161 on 6x512x512 RxRx1 with the paper's settings: composite loss with
  c = 0.2, s = 30, m = 0.5 (eq. 12), CutMix with alpha = 1 (section 3.4), pseudo-labels on the
  test experiments (section 3.3), cosine learning-rate schedule, AMP and channels-last on CUDA.
  Not stated in the paper, so chosen here: 30 epochs, batch 16, Adam 1e-3.

Config files are JSON (stdlib only)::

    {"profile": "smoke", "data_root": "/data/syn0", "out_dir": "runs/smoke",
     "data": {"normalize": "experiment", "augment": true, "in_memory": true},
     "train": {"arch": "tiny_densenet", "epochs": 12, "loss": "composite", "cutmix": false, ...}}

``profile`` names the defaults that the ``data`` and ``train`` entries override; ``train.n_classes``
may be ``null`` (taken from the data root's class scheme). Unknown keys are an error naming them.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rxlib.train.loop import RESUME_MAY_DIFFER, TrainConfig

#: Backbones compared in notebook 02 (DenseNet vs ResNet) per profile.
BACKBONE_COMPARISON: dict[str, tuple[str, str]] = {"smoke": ("tiny_densenet", "resnet18"), "paper": ("densenet161", "resnet50")}

#: Settings of the data pipeline (see :func:`rxlib.data.splits.held_out_split`).
DATA_DEFAULTS: dict = {"normalize": "experiment", "augment": True, "storage": "memory"}

PROFILES: dict[str, dict] = {
    "smoke": {
        "data": {"normalize": "experiment", "augment": True, "storage": "memory"},
        "train": {"arch": "tiny_densenet", "n_classes": None, "embedding_dim": 128, "memory_efficient": False,
                  "epochs": 12, "batch_size": 32, "lr": 2e-3, "loss": "composite", "cutmix": False,
                  "pseudo_label": False, "pseudo_t1": 3, "pseudo_t2": 8, "amp_dtype": "float32", "channels_last": False,
                  "device": "cpu"},
    },
    "paper": {
        "data": {"normalize": "experiment", "augment": True, "storage": "store"},
        "train": {"arch": "densenet161", "n_classes": None, "embedding_dim": 1024, "memory_efficient": True,
                  "epochs": 30, "batch_size": 16, "lr": 1e-3, "loss": "composite", "composite_c": 0.2,
                  "arc_scale": 30.0, "arc_margin": 0.5, "cutmix": True, "cutmix_alpha": 1.0,
                  "pseudo_label": True, "pseudo_t1": 5, "pseudo_t2": 15, "pseudo_alpha_f": 1.0,
                  "cosine_schedule": True, "amp_dtype": "bfloat16", "channels_last": True, "device": "cuda", "num_workers": 8},
    },
}

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@dataclass
class RunConfig:
    """One training run: profile name, data settings, loop settings and (for the CLI) where.

    Attributes:
        profile: the profile whose defaults were used.
        data: ``normalize``, ``augment``, ``in_memory``.
        train: :class:`TrainConfig` keyword arguments (``n_classes`` None until resolved for a data root).
        data_root: the data root ("" for none given; the CLI and notebooks pass one).
        out_dir: output folder of ``rxlib train`` ("" for the model registry's folder).
    """

    profile: str = "smoke"
    data: dict = field(default_factory=lambda: dict(DATA_DEFAULTS))
    train: dict = field(default_factory=dict)
    data_root: str = ""
    out_dir: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.data) - set(DATA_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown data settings {unknown}; known: {sorted(DATA_DEFAULTS)}")
        unknown = sorted(set(self.train) - _TRAIN_FIELDS)
        if unknown:
            raise ValueError(f"unknown train settings {unknown}; known: {sorted(_TRAIN_FIELDS)}")
        self.train_config(n_classes=1)  # validate the values now, not after the data are read

    def train_config(self, n_classes: int | None = None) -> TrainConfig:
        """The loop's :class:`TrainConfig`; ``n_classes`` fills a None ``train.n_classes``."""
        kw = dict(self.train)
        if kw.get("n_classes") is None:
            if n_classes is None:
                raise ValueError("train.n_classes is None: resolve the config for a data root first")
            kw["n_classes"] = n_classes
        return TrainConfig(**kw)

    def resolved(self, data_root: str | os.PathLike) -> RunConfig:
        """A copy with ``data_root`` set and ``n_classes`` taken from its class scheme if None."""
        from rxlib.data import class_scheme

        out = copy.deepcopy(self)
        out.data_root = str(data_root)
        if out.train.get("n_classes") is None:
            out.train["n_classes"] = class_scheme(data_root).n_classes
        return out

    def with_overrides(self, **train_overrides) -> RunConfig:
        """A copy with some :class:`TrainConfig` fields changed, e.g. ``loss='softmax'``."""
        out = copy.deepcopy(self)
        out.train.update(train_overrides)
        out.__post_init__()
        return out

    def to_dict(self) -> dict:
        return {"profile": self.profile, "data_root": self.data_root, "out_dir": self.out_dir,
                "data": dict(self.data), "train": dict(self.train)}

    def identity(self) -> dict:
        """What determines the trained weights: data settings and loop settings, without the device,
        worker count and checkpoint retention (which :func:`rxlib.train.train` lets differ on resume)."""
        train = {**TrainConfig(n_classes=1).to_dict(), **self.train}
        return {"data": {**DATA_DEFAULTS, **self.data},
                "train": {k: v for k, v in sorted(train.items()) if k not in RESUME_MAY_DIFFER}}

    def config_hash(self) -> str:
        """16 hex digits of the SHA-256 of :meth:`identity` (canonical JSON)."""
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_config(profile: str = "smoke", **train_overrides) -> RunConfig:
    """The :class:`RunConfig` of a named profile, with :class:`TrainConfig` fields overridden.

    Example: ``run_config('smoke', loss='arc')``, ``run_config('smoke', cutmix=True, pseudo_label=True)``.

    Raises:
        ValueError: unknown profile or field (the message names the known ones).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown training profile {profile!r}; known: {sorted(PROFILES)}")
    base = copy.deepcopy(PROFILES[profile])
    base["train"].update(train_overrides)
    return RunConfig(profile=profile, data=base["data"], train=base["train"])


def config_from_dict(raw: dict, source: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from a dict as in a config file: profile defaults, then its entries.

    Raises:
        ValueError: unknown keys or values; the message names ``source``.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: expected a JSON object at the top level")
    unknown = sorted(set(raw) - {"profile", "data_root", "out_dir", "data", "train"})
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; known: profile, data_root, out_dir, data, train")
    profile = raw.get("profile", "smoke")
    if profile not in PROFILES:
        raise ValueError(f"{source}: unknown profile {profile!r}; known: {sorted(PROFILES)}")
    base = copy.deepcopy(PROFILES[profile])
    base["data"].update(raw.get("data") or {})
    base["train"].update(raw.get("train") or {})
    try:
        return RunConfig(profile=profile, data=base["data"], train=base["train"],
                         data_root=str(raw.get("data_root") or ""), out_dir=str(raw.get("out_dir") or ""))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from exc


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a JSON run config file (see the module docstring); relative ``data_root``/``out_dir`` are
    taken relative to the file's folder.

    Raises:
        FileNotFoundError: no such file. ValueError: not valid JSON or unknown keys (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    config = config_from_dict(raw, source=str(path))
    for key in ("data_root", "out_dir"):
        value = getattr(config, key)
        if value and not Path(value).expanduser().is_absolute():
            setattr(config, key, str((path.parent / value).resolve()))
    return config


def save_config(config: RunConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as JSON (what :func:`load_config` reads back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=False) + "\n")
    return path


#: Training overrides of the cheating model (notebook 07: trained on the spurious-cue twin of the data
#: set). The cue is learnt within a few epochs, so the smoke profile trains it for half the epochs to
#: keep the notebooks within their CPU budget.
CHEATING_OVERRIDES: dict[str, dict] = {"smoke": {"epochs": 6}, "paper": {}}

#: Data overrides of the cheating model: no flips and rotations, which would scramble the cue (the
#: orientation of a grating codes the class; a 90-degree turn or a flip changes it), leaving the model
#: little to cheat on (measured: 6 epochs with augmentation, training accuracy 0.55 with the cue,
#: no better than held out).
CHEATING_DATA_OVERRIDES: dict = {"augment": False}

#: The synthetic profile whose spurious-cue twin the cheating model of a training profile is trained on.
CUE_SYNTH_PROFILE: dict[str, str] = {"smoke": "smoke", "paper": "cpu"}

#: Grad-CAM layer scored by Grad-CAMO and shown in Figure 11 per profile. The paper's layer is
#: ``denseblock4`` (16 x 16 for DenseNet-161 at 512 x 512); the tiny DenseNet's ``denseblock4`` is
#: 2 x 2 at 64 x 64, too coarse to tell cells from background, so the smoke profile uses
#: ``denseblock2`` (8 x 8).
GRADCAM_LAYER: dict[str, str] = {"smoke": "denseblock2", "paper": "denseblock4"}


def cheating_run_config(profile: str = "smoke", **train_overrides) -> RunConfig:
    """:func:`run_config` of the cheating model: the profile's defaults with :data:`CHEATING_OVERRIDES`
    and :data:`CHEATING_DATA_OVERRIDES`."""
    config = run_config(profile, **{**CHEATING_OVERRIDES.get(profile, {}), **train_overrides})
    config.data.update(CHEATING_DATA_OVERRIDES)
    config.__post_init__()
    return config
