"""Named profiles, the run configuration files of ``rxlib train --config FILE``, and the runtime settings.

Used alike by :mod:`rxlib.plan`, :mod:`rxlib.reproduce`, :mod:`rxlib.notebook` and :mod:`rxlib.train`.

A :class:`RunConfig` is everything that determines a trained model: the :class:`~rxlib.train.TrainConfig`
of the loop plus how the data are read (normalisation, augmentation, storage: memory, the site store or PNGs). Three
profiles:

- ``smoke``: ``tiny_densenet`` on the 64x64 smoke synthetic set, 12 epochs of batch 32 on the CPU
  (about half a minute per model on 2 cores, images held in memory), composite loss, no CutMix, no
  pseudo-labels (the baseline; notebooks switch those on with :func:`run_config` overrides).
- ``paper``: DenseNet-161 on 6x512x512 RxRx1 with the paper's settings: composite loss with
  c = 0.2, s = 30, m = 0.5 (eq. 12), CutMix with alpha = 1 (section 3.4), pseudo-labels on the
  test experiments (section 3.3), cosine learning-rate schedule, AMP and channels-last on CUDA.
  Not stated in the paper, so chosen here: 30 epochs, batch 16, Adam 1e-3. ``pretrained: True``: the
  paper fine-tunes ImageNet weights, read from the torch cache (never downloaded); ``rxlib reproduce
  --dry-run`` says whether they are there, a run stops up front if not, and ``--set train.pretrained=false``
  trains from scratch instead. Its comparison models run on the reduced budget of :data:`BUDGETS`.
- ``paper-mini``: the paper profile with only the sizes shrunk (1 epoch of 2 steps of batch 4 on the CPU,
  no ImageNet weights), so that CI runs every notebook along the paper's code path.

:func:`settings` applies ``--set section.key=value`` overrides (``train``, ``data``, ``budget``) to a profile;
:mod:`rxlib.plan` turns the settings into the models each notebook trains.

Config files are JSON (stdlib only)::

    {"profile": "smoke", "data_root": "/data/syn0", "out_dir": "runs/smoke",
     "data": {"normalize": "experiment", "augment": true, "storage": "memory"},
     "train": {"arch": "tiny_densenet", "epochs": 12, "loss": "composite", "cutmix": false, ...}}

``profile`` names the defaults that the ``data`` and ``train`` entries override; ``train.n_classes``
may be ``null`` (taken from the data root's class scheme). Unknown keys are an error naming them.

Runtime settings say how a run uses this machine, never what it trains (they are not part of a
model's registry key): the CPU thread count (:func:`cpu_threads`, ``RXLIB_TRAIN_THREADS``;
:func:`configure_threads` sets it once for a notebook, :func:`training_threads` for one run) and
whether the configured device exists here (:func:`check_device`).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rxlib.train.loop import RESUME_MAY_DIFFER, TrainConfig

#: Backbones compared in notebook 02 (DenseNet vs ResNet) per profile.
BACKBONE_COMPARISON: dict[str, tuple[str, str]] = {"smoke": ("tiny_densenet", "tiny_resnet"),
                                                   "paper-mini": ("densenet161", "resnet50"),
                                                   "paper": ("densenet161", "resnet50")}

#: Settings of the data pipeline (see :func:`rxlib.data.splits.held_out_split`).
DATA_DEFAULTS: dict = {"normalize": "experiment", "augment": True, "storage": "memory"}

PROFILES: dict[str, dict] = {
    "smoke": {
        "data": {"normalize": "experiment", "augment": True, "storage": "memory"},
        "train": {"arch": "tiny_densenet", "n_classes": None, "embedding_dim": 128, "memory_efficient": False,
                  "epochs": 12, "batch_size": 32, "lr": 2e-3, "loss": "composite", "cutmix": False,
                  "pseudo_label": False, "pseudo_t1": 3, "pseudo_t2": 8, "amp_dtype": "float32",
                  # channels-last on the CPU too: 1.4x the training steps per second (bench_training)
                  "channels_last": True, "device": "cpu"},
    },
    "paper": {
        "data": {"normalize": "experiment", "augment": True, "storage": "store"},
        "train": {"arch": "densenet161", "n_classes": None, "embedding_dim": 1024, "memory_efficient": True,
                  "epochs": 30, "batch_size": 16, "lr": 1e-3, "loss": "composite", "composite_c": 0.2,
                  "arc_scale": 30.0, "arc_margin": 0.5, "cutmix": True, "cutmix_alpha": 1.0,
                  "pseudo_label": True, "pseudo_t1": 5, "pseudo_t2": 15, "pseudo_alpha_f": 1.0,
                  "cosine_schedule": True, "amp_dtype": "bfloat16", "channels_last": True, "device": "cuda", "num_workers": 8,
                  "pretrained": True},
    },
}

# The paper profile with only the sizes shrunk, so that every notebook runs the paper's code path on a CPU
# in CI on the small `paper-mini` synthetic set (64x64: the smallest size at which every DenseNet-161 stage
# keeps a 2x2 map): 1 epoch of 2 steps of batch 4, pseudo-labels from the first epoch (T1 = 0, T2 = 1, so
# the unlabelled branch runs), 2 loader workers on the CPU, no ImageNet weights (CI has none).
PROFILES["paper-mini"] = {
    "data": dict(PROFILES["paper"]["data"]),
    "train": {**PROFILES["paper"]["train"], "epochs": 1, "batch_size": 4, "pseudo_t1": 0, "pseudo_t2": 1,
              "device": "cpu", "num_workers": 2, "max_batches_per_epoch": 2, "pretrained": False},
}

#: The budget of the comparison models (rxlib.plan): every model a notebook trains only to compare it
#: with another (02's ResNet, 03's single losses, 04's ablation, 05's "without pseudo-labels", 07's
#: cheating model) is trained with these settings instead of the profile's, and so is the profile's
#: recipe it is compared with, so that a comparison differs in one factor only. The main model (the
#: profile's recipe at its full budget) is trained once and used by the explanation notebooks 05-08.
#:
#: - ``comparison_epochs``: epochs (None: the profile's); the pseudo-label ramp ``pseudo_t1``/``pseudo_t2``
#:   is scaled by the same factor so that the ramp keeps its place in training.
#: - ``comparison_max_batches``: steps per epoch (None: full epochs).
#: - ``comparison_plates``: train and evaluate on these plates of every experiment only (None: all).
#:   RxRx1 carries a different group of 277 siRNAs on each plate, so plates [1, 2] keep half the sites
#:   and half the treatment classes (all controls).
BUDGET_DEFAULTS: dict = {"comparison_epochs": None, "comparison_max_batches": None, "comparison_plates": None}
BUDGETS: dict[str, dict] = {
    # smoke: 9 comparison models at 12 epochs on both plates were two thirds of the smoke run's CPU time;
    # at 6 epochs on plate 1 (half the sites; every smoke plate carries every class) they are a sixth of
    # that, while the main model (explained by 05-08) keeps its 12 epochs on all plates
    "smoke": {"comparison_epochs": 6, "comparison_plates": [1]},
    "paper-mini": {"comparison_max_batches": 1},
    "paper": {"comparison_epochs": 10, "comparison_plates": [1, 2]},
}

_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
#: Data settings that exist only when set (absent, they leave the registry key unchanged).
OPTIONAL_DATA: dict = {"plates": None, "cue": None, "shuffle_labels": None}
#: Loop settings added after models were registered, with the value every earlier model was trained with:
#: at that value they are left out of the registry key, so that those models keep their keys.
OPTIONAL_TRAIN: dict = {"validate_each_epoch": True}


@dataclass
class RunConfig:
    """One training run: profile name, data settings, loop settings and (for the CLI) where.

    Attributes:
        profile: the profile whose defaults were used.
        data: ``normalize``, ``augment``, ``storage`` (``memory``, ``store`` or ``png``, see
            :class:`rxlib.data.RxRx1Dataset`); optionally ``plates`` (train and evaluate on these plates
            only; applied by :func:`rxlib.train.registry.config_split`).
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
        unknown = sorted(set(self.data) - set(DATA_DEFAULTS) - set(OPTIONAL_DATA))
        if unknown:
            raise ValueError(f"unknown data settings {unknown}; known: {sorted({*DATA_DEFAULTS, *OPTIONAL_DATA})}")
        check_plates(self.data.get("plates"))
        check_data_values(self.data)
        unknown = sorted(set(self.train) - _TRAIN_FIELDS)
        if unknown:
            renamed = " (the boolean 'amp' is now 'amp_dtype': bfloat16, float16 or float32)" if "amp" in unknown else ""
            raise ValueError(f"unknown train settings {unknown}{renamed}; known: {sorted(_TRAIN_FIELDS)}")
        types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
        for name, value in self.train.items():  # types first: 1.5 epochs or "yes" for a flag is one clear line
            if not (name == "n_classes" and value is None):
                _check_type(f"train.{name}", value, types[name])
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
        data = {k: v for k, v in {**DATA_DEFAULTS, **self.data}.items() if not (k in OPTIONAL_DATA and v is None)}
        return {"data": data,
                "train": {k: v for k, v in sorted(train.items())
                          if k not in RESUME_MAY_DIFFER and not (k in OPTIONAL_TRAIN and v == OPTIONAL_TRAIN[k])}}

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


def check_plates(plates) -> list[int] | None:
    """Validate a ``data.plates`` setting: None or a non-empty list of plate numbers (>= 1)."""
    if plates is None:
        return None
    if (not isinstance(plates, (list, tuple)) or not plates
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in plates)):
        raise ValueError(f"data.plates must be null or a non-empty list of plate numbers, got {plates!r}")
    return sorted(set(plates))


# --------------------------------------------------------------------------------------------------
# Settings: profile defaults plus ``--set section.key=value`` overrides

#: The sections a ``--set`` key may name.
SETTING_SECTIONS: tuple[str, ...] = ("train", "data", "budget")


@dataclass(frozen=True)
class Settings:
    """A profile's settings after overrides: what the notebooks and the plan of a run share.

    Attributes:
        profile: the training profile.
        train: :class:`TrainConfig` keyword arguments of the main model.
        data: data settings of the main model.
        budget: the comparison budget (keys of :data:`BUDGET_DEFAULTS`).
        overrides: the ``section.key -> value`` overrides applied (for the record).
    """

    profile: str
    train: dict
    data: dict
    budget: dict
    overrides: dict


def parse_value(text: str):
    """A ``--set`` value: JSON if it parses (``10``, ``true``, ``null``, ``[1, 2]``, ``"x"``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items) -> dict:
    """``['train.epochs=10', 'train.device=cpu']`` -> ``{'train.epochs': 10, 'train.device': 'cpu'}``.

    A mapping is returned as a dict of the same items; a string is read as a JSON object (the form
    a notebook's ``overrides`` parameter takes; "" for none).

    Raises:
        ValueError: an item without ``=``, or a string that is not a JSON object (the message names it).
    """
    if items is None or items == "":
        return {}
    if isinstance(items, str):
        try:
            parsed = json.loads(items)
        except json.JSONDecodeError as exc:
            raise ValueError(f"overrides {items!r} are not a JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"overrides {items!r} are not a JSON object of 'section.key': value")
        return dict(parsed)
    if isinstance(items, dict):
        return dict(items)
    out = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=10")
        out[key.strip()] = parse_value(value.strip())
    return out


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def check_data_values(data: dict) -> None:
    """Raise a one-line ValueError naming the key and value of a bad ``data`` setting."""
    from rxlib.data.dataset import NORMALISATIONS, STORAGES

    allowed = {"storage": STORAGES, "normalize": NORMALISATIONS}
    for name, choices in allowed.items():
        if name in data and data[name] not in choices:
            raise ValueError(f"bad value for data.{name}: {data[name]!r} (expected one of {', '.join(choices)})")
    for name in ("augment", "cue"):
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"bad value for data.{name}: {value!r} (expected true or false)")


def _check_type(key: str, value, annotation: str) -> None:
    """Raise a one-line ValueError unless ``value`` fits the dataclass field ``annotation`` (a string)."""
    kinds = [part.strip() for part in str(annotation).split("|")]
    for kind in kinds:
        if kind == "None" and value is None:
            return
        expected = _SCALARS.get(kind)
        if expected is None:
            continue
        if expected is bool and isinstance(value, bool):
            return
        if expected is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if expected is str and isinstance(value, str):
            return
    raise ValueError(f"bad value for {key}: {value!r} (expected {annotation})")


def settings(profile: str, overrides=None) -> Settings:
    """The settings of ``profile`` with ``overrides`` (see :func:`parse_overrides`) applied and checked.

    Keys are ``train.<TrainConfig field>``, ``data.<data setting>`` or ``budget.<budget setting>``.

    Raises:
        ValueError: unknown profile, section or key, or a bad value; one line naming the key and value.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown training profile {profile!r}; known: {sorted(PROFILES)}")
    overrides = parse_overrides(overrides)
    base = copy.deepcopy(PROFILES[profile])
    sections = {"train": base["train"], "data": base["data"],
                "budget": {**BUDGET_DEFAULTS, **copy.deepcopy(BUDGETS.get(profile, {}))}}
    train_types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        section, _, name = str(key).partition(".")
        if section not in SETTING_SECTIONS or not name:
            raise ValueError(f"unknown setting {key!r} (value {value!r}): keys are section.name with section "
                             f"one of {', '.join(SETTING_SECTIONS)}, e.g. train.epochs")
        if section == "train":
            if name not in train_types:
                raise ValueError(f"unknown setting {key!r} (value {value!r}); known train settings: "
                                 f"{', '.join(sorted(train_types))}")
            _check_type(key, value, train_types[name])
        elif section == "data":
            known = {*DATA_DEFAULTS, *OPTIONAL_DATA}
            if name not in known:
                raise ValueError(f"unknown setting {key!r} (value {value!r}); known data settings: "
                                 f"{', '.join(sorted(known))}")
            if name == "cue":
                raise ValueError(f"{key}={value!r} cannot be set: the cue belongs to the cheating model alone "
                                 "(rxlib.plan.MODELS), or clean and cheating models would both cheat")
            if name in DATA_DEFAULTS and DATA_DEFAULTS[name] is not None:
                _check_type(key, value, type(DATA_DEFAULTS[name]).__name__)
        else:
            if name not in BUDGET_DEFAULTS:
                raise ValueError(f"unknown setting {key!r} (value {value!r}); known budget settings: "
                                 f"{', '.join(sorted(BUDGET_DEFAULTS))}")
            if name == "comparison_plates":
                try:
                    check_plates(value)
                except ValueError:
                    raise ValueError(f"bad value for {key}: {value!r} (expected null or a list of plate "
                                     "numbers, e.g. [1, 2])") from None
            else:
                _check_type(key, value, "int | None")
                if value is not None and value < 1:
                    raise ValueError(f"bad value for {key}: {value!r} (expected a positive integer or null)")
        sections[section][name] = value
    try:
        RunConfig(profile=profile, data=sections["data"], train=sections["train"])
    except (TypeError, ValueError) as exc:
        changed = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "none"
        raise ValueError(f"profile {profile!r} with overrides ({changed}): {exc}") from None
    return Settings(profile, sections["train"], sections["data"], sections["budget"], overrides)


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
    for section in ("data", "train"):
        if section in raw and not isinstance(raw[section], dict):
            raise ValueError(f"{source}: {section} must be an object of settings, got {raw[section]!r}")
    base["data"].update(raw.get("data", {}))
    base["train"].update(raw.get("train", {}))
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


#: Training overrides of the cheating model and its clean twin (notebook 07: the cheating model is trained
#: with a class-coded cue drawn into its training sites, rxlib.data.cue). The cue is learnt within a few epochs, so the smoke profile trains it for half the epochs to
#: keep the notebooks within their CPU budget.
CHEATING_OVERRIDES: dict[str, dict] = {"smoke": {"epochs": 6}, "paper-mini": {}, "paper": {}}

#: Data overrides of the cheating model: no flips and rotations, which would scramble the cue (the
#: orientation of a grating codes the class; a 90-degree turn or a flip changes it), leaving the model
#: little to cheat on (measured: 6 epochs with augmentation, training accuracy 0.55 with the cue,
#: no better than held out).
CHEATING_DATA_OVERRIDES: dict = {"augment": False}

#: Grad-CAM layer scored by Grad-CAMO and shown in Figure 11 per profile. The paper's layer is
#: ``denseblock4`` (16 x 16 for DenseNet-161 at 512 x 512); the tiny DenseNet's ``denseblock4`` is
#: 2 x 2 at 64 x 64, too coarse to tell cells from background, so the smoke profile uses
#: ``denseblock2`` (8 x 8).
#: ``paper-mini`` keeps the paper's layer (2 x 2 at 64 x 64): it exists to run the paper's code path.
GRADCAM_LAYER: dict[str, str] = {"smoke": "denseblock2", "paper-mini": "denseblock4", "paper": "denseblock4"}


#: Held-out sites the sanity checks explain (notebooks 07 and 08). Each site costs one explanation per
#: randomisation step (12 steps for a DenseNet) and, for the channel methods, eq. 15 at two layers plus
#: occlusion's six forward passes: paper-mini (DenseNet-161 on 2 CPU cores) explains a few.
SANITY_SITES: dict[str, dict[str, int]] = {"smoke": {"gradcam": 32, "channels": 24},
                                           "paper-mini": {"gradcam": 8, "channels": 4},
                                           "paper": {"gradcam": 64, "channels": 48}}


def cheating_run_config(profile: str = "smoke", **train_overrides) -> RunConfig:
    """:func:`run_config` of the cheating model: the profile's defaults with :data:`CHEATING_OVERRIDES`
    and :data:`CHEATING_DATA_OVERRIDES`."""
    config = run_config(profile, **{**CHEATING_OVERRIDES.get(profile, {}), **train_overrides})
    config.data.update(CHEATING_DATA_OVERRIDES)
    config.__post_init__()
    return config


# --------------------------------------------------------------------------------------------------
# Runtime settings: how a run uses this machine (threads, device); they never change the registry key

#: Environment variable that fixes the CPU thread count of training and of the passes after it.
THREADS_VARIABLE = "RXLIB_TRAIN_THREADS"


def cpu_threads() -> int:
    """Threads for CPU training and explanation: ``RXLIB_TRAIN_THREADS`` if set, else 1.

    One thread, whatever the machine: float results depend on the thread count, so a fixed count gives
    the same seed the same model on any machine and any load; and torch's threads spin-wait on each
    other, so on a machine shared with other jobs two threads ran 5-10 times slower per step than one
    (17-21 against 170-186 images/s of the smoke network on this project's 2-core machine under a
    competing load). Cores are used by running models and notebooks side by side instead
    (:mod:`rxlib.train.pool`, :func:`rxlib.reproduce.reproduce`). On a large idle machine,
    ``RXLIB_TRAIN_THREADS`` trades that reproducibility across thread counts for speed.

    Raises:
        ValueError: ``RXLIB_TRAIN_THREADS`` is not a positive integer (names it and the value).
    """
    value = os.environ.get(THREADS_VARIABLE)
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{THREADS_VARIABLE} must be a positive integer, got {value!r}")
        return int(value)
    return 1




def configure_threads() -> int:
    """Set torch's CPU thread count to :func:`cpu_threads` for the rest of the process and return it.

    Call it once where a notebook or script starts (nothing calls it on import), so that its passes
    after training run with the same fixed thread count as training, whatever the machine's load.
    """
    threads = cpu_threads()
    torch.set_num_threads(threads)
    return threads


@contextmanager
def training_threads(device: str | torch.device) -> Iterator[int]:
    """Run a block with :func:`cpu_threads` threads when ``device`` is the CPU (restored afterwards);
    on a GPU torch's thread count is left as it is. Yields the count in force."""
    before = torch.get_num_threads()
    threads = cpu_threads() if torch.device(device).type == "cpu" else before
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def device_problem(device: str, *, hint: str = "--set train.device=cpu") -> str | None:
    """Why ``device`` cannot be used on this machine (a CUDA device and no CUDA GPU), or None.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:1``, ...
        hint: how the user switches to the CPU from where they called (the message ends with it).
    """
    if not str(device).startswith("cuda") or torch.cuda.is_available():
        return None
    return (f"train.device is {device!r} but no CUDA GPU is available on this machine: run on a GPU machine "
            f"or pass {hint}")


def check_device(device: str, *, hint: str = "--set train.device=cpu") -> None:
    """Raise a one-line ValueError (:func:`device_problem`) if ``device`` cannot be used on this machine."""
    problem = device_problem(device, hint=hint)
    if problem:
        raise ValueError(problem)
