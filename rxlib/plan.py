"""The plan of a run: which models each notebook trains or reuses, every pass over the data, and the cost.

One table, :func:`notebook_model_names`, says which models each notebook asks for; the notebooks get
them through :func:`notebook_models` / :func:`train_model` (``ctx.models("04")``, ``ctx.model("main")``),
and :func:`build_plan` prices the same table, so the plan cannot drift from what the notebooks train.

Models (:data:`MODELS`):

- ``main``: the profile's recipe at its full budget (for ``paper``: DenseNet-161, composite loss, CutMix,
  pseudo-labels, cosine decay, 30 epochs). Trained once; notebooks 06-08 explain it.
- comparison models: every model trained to be compared with another (02 the ResNet, 03 one loss
  alone, 04 the ablation, 05 with and without pseudo-labels, 07 the cheating model), and the recipe
  they are compared with (``reference``), trained on the profile's comparison budget
  (:data:`rxlib.profiles.BUDGETS`: fewer epochs, a plate subset, fewer steps), so that every
  comparison differs in one factor and the whole paper profile fits in a stated number of GPU-hours.

Costs (:func:`build_plan`) are estimates from stated rates, never measurements of this machine:
:data:`ASSUMED_RATES` (images per second of DenseNet-161 on 6 x 512 x 512 sites on one H100/H200-class
GPU in bfloat16), replaced by a measured rate from ``reports/benchmarks/gpu_check.csv`` when that
file exists (:func:`measured_rates`), scaled by :data:`ARCH_COST` and by the pixel count. Preparation is
priced at :data:`PREP_SITES_PER_S_PER_CORE` (decoding every PNG once into a site store, measured here).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rxlib import config as paths
from rxlib.profiles import (
    BACKBONE_COMPARISON,
    CHEATING_DATA_OVERRIDES,
    CHEATING_OVERRIDES,
    RunConfig,
    Settings,
    device_problem,
    settings as profile_settings,
)

# --------------------------------------------------------------------------------------------------
# The model table


@dataclass(frozen=True)
class ModelSpec:
    """One model the notebooks ask for, by name.

    Attributes:
        name: the name notebooks use (``ctx.model("main")``).
        description: one line for the plan.
        train: :class:`~rxlib.train.TrainConfig` settings over the profile's (absolute values, so that a
            variant means the same in every profile); ``"<comparison arch>"`` stands for the second
            architecture of :data:`~rxlib.profiles.BACKBONE_COMPARISON`.
        comparison: trained on the comparison budget.
        cheating_settings: trained with the cheating model's settings (:data:`CHEATING_OVERRIDES`, no
            flips or rotations), so that the cheating model and its clean twin differ in the cue alone.
        cue: trained with the spurious cue drawn into the training sites of the same data (:mod:`rxlib.data.cue`).
        shuffled_labels: trained on its training labels permuted among the training sites (the label
            randomisation test of :mod:`rxlib.explain.sanity`).
    """

    name: str
    description: str
    train: Mapping[str, Any] = field(default_factory=dict)
    comparison: bool = True
    cheating_settings: bool = False
    cue: bool = False
    shuffled_labels: bool = False


_COMPARISON_ARCH = "<comparison arch>"
# The models whose training curves no notebook shows (02-04 show those of the comparison models): no
# held-out pass after each epoch (same weights, an empty val_* history; their held-out predictions after
# training still score them). In the smoke run with three seeds that pass was about 20 s of CPU. (The
# label-shuffled model keeps it: it differs from the reference in its labels alone.)
_NO_CURVES = {"validate_each_epoch": False}

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("main", "the profile's recipe, full budget (trained once, explained by 06-08)", _NO_CURVES,
              comparison=False),
    ModelSpec("reference", "the profile's recipe on the comparison budget", {}),
    ModelSpec("resnet", "the recipe with the comparison backbone", {"arch": _COMPARISON_ARCH}),
    ModelSpec("softmax_only", "the recipe with the softmax loss alone (eq. 3)", {"loss": "softmax"}),
    ModelSpec("arc_only", "the recipe with the arc-margin loss alone (eq. 6)", {"loss": "arc"}),
    ModelSpec("baseline", "no CutMix, no pseudo-labels", {"cutmix": False, "pseudo_label": False}),
    ModelSpec("cutmix_only", "CutMix, no pseudo-labels", {"cutmix": True, "pseudo_label": False}),
    ModelSpec("pl_only", "pseudo-labels, no CutMix", {"cutmix": False, "pseudo_label": True}),
    ModelSpec("cutmix_pl", "CutMix and pseudo-labels", {"cutmix": True, "pseudo_label": True}),
    ModelSpec("without_pl", "the recipe without pseudo-labels", {"pseudo_label": False}),
    ModelSpec("with_pl", "the recipe with pseudo-labels", {"pseudo_label": True}),
    ModelSpec("clean_twin", "the cheating model's settings without the cue: its clean comparison", _NO_CURVES,
              cheating_settings=True),
    ModelSpec("cheating", "trained with a class-coded cue drawn into its training sites (no flips/rotations)",
              _NO_CURVES, cheating_settings=True, cue=True),
    ModelSpec("label_shuffled", "the recipe on shuffled training labels (label randomisation, Adebayo et al. 2018)",
              {}, shuffled_labels=True),
)}

#: Per notebook, the groups of its models (by label) that are compared with each other, so that no two
#: in a group may be the same model; None: all of the notebook's models form one group. In 07 the main
#: model is only explained, and the reference only faces the label-shuffled model: with no budget they
#: may be the same model.
COMPARED: dict[str, tuple[tuple[str, ...], ...] | None] = {
    "02_backbone": None, "03_losses": None, "04_pseudo_label_cutmix": None, "05_embeddings_tsne": None,
    "07_gradcam": (("clean", "cheating"), ("reference", "label-shuffled")),
}
#: Notebooks whose models are compared with each other.
COMPARISON_NOTEBOOKS: tuple[str, ...] = tuple(COMPARED)
#: Notebooks that test claims (``ctx.show_verdicts``): those an extra seed runs again
#: (``rxlib reproduce --seeds N``, :mod:`rxlib.explain.seeds`).
VERDICT_NOTEBOOKS: tuple[str, ...] = ("03_losses", "04_pseudo_label_cutmix", "05_embeddings_tsne", "06_conv_filters",
                                      "07_gradcam", "08_channel_attention")


def compared_groups(stem: str, labels) -> list[list[str]]:
    """The groups of :data:`COMPARED` for notebook ``stem`` whose models are ``labels`` ([] if none)."""
    groups = COMPARED.get(stem, ())
    return [list(labels)] if groups is None else [[label for label in g if label in labels] for g in groups]


def notebook_model_names(profile: str) -> dict[str, dict[str, str]]:
    """Per notebook stem: ``{label shown in the notebook: model name of MODELS}``, in run order."""
    dense, resnet = BACKBONE_COMPARISON.get(profile, BACKBONE_COMPARISON["paper"])
    return {
        "01_dataset_stats": {},
        "02_backbone": {dense: "reference", resnet: "resnet"},
        "03_losses": {"softmax": "softmax_only", "arc": "arc_only", "composite": "reference"},
        "04_pseudo_label_cutmix": {"baseline": "baseline", "+CutMix": "cutmix_only", "+pseudo-labels": "pl_only",
                                   "+CutMix +pseudo-labels": "cutmix_pl"},
        "05_embeddings_tsne": {"without PL": "without_pl", "with PL": "with_pl"},
        "06_conv_filters": {"main": "main"},
        "07_gradcam": {"main": "main", "clean": "clean_twin", "cheating": "cheating", "reference": "reference",
                       "label-shuffled": "label_shuffled"},
        "08_channel_attention": {"main": "main"},
    }


def _notebook_stem(notebook: str, profile: str) -> str:
    from rxlib.manifest import matching_notebooks

    table = notebook_model_names(profile)
    matches = matching_notebooks(notebook, table)
    if len(matches) != 1:
        raise ValueError(f"unknown notebook {notebook!r}; known: {', '.join(table)}")
    return matches[0]


def apply_budget(train: dict, data: dict, budget: Mapping[str, Any]) -> None:
    """Change ``train`` and ``data`` in place to the comparison budget (see
    :data:`rxlib.profiles.BUDGETS`); the pseudo-label ramp is scaled with the epochs. A budget only
    reduces: comparison epochs above the profile's (``--set train.epochs=2`` on smoke) leave the epochs."""
    epochs = budget.get("comparison_epochs")
    if epochs is not None and epochs < train["epochs"]:
        factor = epochs / train["epochs"]
        t1 = int(round(train.get("pseudo_t1", 5) * factor))
        t2 = max(t1 + 1, int(round(train.get("pseudo_t2", 15) * factor)))
        train.update(epochs=int(epochs), pseudo_t1=t1, pseudo_t2=t2)
    steps = budget.get("comparison_max_batches")
    if steps is not None:
        current = train.get("max_batches_per_epoch")
        train["max_batches_per_epoch"] = int(steps) if current is None else min(int(current), int(steps))
    plates = budget.get("comparison_plates")
    if plates is not None:
        data["plates"] = sorted(set(int(p) for p in plates))


def budget_note(s: Settings) -> str:
    """What the comparison budget leaves out, in words ("" when it changes nothing)."""
    parts = []
    epochs = s.budget.get("comparison_epochs")
    if epochs is not None and epochs < s.train["epochs"]:
        parts.append(f"{epochs} epoch{'' if epochs == 1 else 's'} instead of {s.train['epochs']}")
    steps = s.budget.get("comparison_max_batches")
    if steps is not None and steps != s.train.get("max_batches_per_epoch"):
        parts.append(f"at most {steps} steps per epoch")
    plates = s.budget.get("comparison_plates")
    if plates is not None:
        parts.append(f"plate{'s' if len(plates) > 1 else ''} {', '.join(map(str, plates))} of each experiment only")
    return ("reduced budget: " + ", ".join(parts)) if parts else ""


def model_config(s: Settings, name: str) -> RunConfig:
    """The :class:`RunConfig` of model ``name`` of :data:`MODELS` under settings ``s``.

    Raises:
        ValueError: unknown model name (the message lists the known ones).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    train, data = dict(s.train), dict(s.data)
    if spec.cheating_settings:
        train.update(CHEATING_OVERRIDES.get(s.profile, {}))
        data.update(CHEATING_DATA_OVERRIDES)
    if spec.cue:
        data["cue"] = True
    if spec.shuffled_labels:
        data["shuffle_labels"] = True
    comparison_arch = BACKBONE_COMPARISON.get(s.profile, BACKBONE_COMPARISON["paper"])[1]
    train.update({k: (comparison_arch if v == _COMPARISON_ARCH else v) for k, v in spec.train.items()})
    if spec.comparison:
        apply_budget(train, data, s.budget)
    elif not train.get("validate_each_epoch", True):
        # without a comparison budget the reference is this very run, and 02-04 show its curves: one run
        # that validates serves both
        validated = RunConfig(profile=s.profile, data=data, train={**train, "validate_each_epoch": True})
        if validated.identity() == model_config(s, "reference").identity():
            return validated
    return RunConfig(profile=s.profile, data=data, train=train)


def check_distinct(notebook: str, keys: Mapping[str, str]) -> None:
    """Raise unless every label of a comparison notebook maps to a different registry key.

    Raises:
        ValueError: names the notebook, the two labels and the shared key.
    """
    seen: dict[str, str] = {}
    for label, key in keys.items():
        if key in seen:
            raise ValueError(f"notebook {notebook}: {seen[key]!r} and {label!r} are the same model (registry key "
                             f"{key}); a comparison of a model with itself shows nothing - change the overrides")
        seen[key] = label


def train_model(s: Settings, name: str, data_root: str | os.PathLike, *, progress: bool = False):
    """Train or load model ``name`` (:func:`rxlib.train.registry.train_or_load`) on ``data_root``.

    Every model trains on the notebook's own data root, the cheating model too: its cue is drawn on the
    fly into the same sites (:mod:`rxlib.data.cue`).
    """
    from rxlib.train.registry import train_or_load

    return train_or_load(model_config(s, name), Path(data_root), progress=progress)


def notebook_models(s: Settings, notebook: str, data_root: str | os.PathLike, *, progress: bool = False) -> dict:
    """Every model ``notebook`` asks for, trained or loaded: ``{label: TrainedModel}``.

    Raises:
        ValueError: two models of a comparison notebook resolve to the same registry key.
    """
    from rxlib.train.registry import model_key, train_or_load

    stem = _notebook_stem(notebook, s.profile)
    names = notebook_model_names(s.profile)[stem]
    runs = {label: (model_config(s, name), Path(data_root)) for label, name in names.items()}
    for group in compared_groups(stem, runs):
        check_distinct(stem, {label: model_key(*runs[label]) for label in group})
    return {label: train_or_load(cfg, root, progress=progress) for label, (cfg, root) in runs.items()}


# --------------------------------------------------------------------------------------------------
# Rates

#: Stated, not measured: images per second of DenseNet-161 (memory-efficient, channels-last) on
#: 6 x 512 x 512 sites on ONE H100/H200-class GPU in bfloat16. Training counts forward + backward
#: (Grad-CAM and gradient-based channel importance cost about the same per image); inference is
#: forward only. From DenseNet-161 at 224 px (~600 training images/s on an A100 with AMP), x 0.19 for
#: 5.2 times the pixels, x 1.7 for an H100, x 0.8 for the recomputed bottlenecks.
ASSUMED_RATES: dict[str, float] = {"train_images_per_s": 150.0, "infer_images_per_s": 450.0}
#: Cost per image relative to DenseNet-161 at the same size (from published FLOPs and throughputs).
ARCH_COST: dict[str, float] = {"densenet161": 1.0, "resnet50": 0.35, "resnet18": 0.15, "tiny_densenet": 0.02,
                               "tiny_resnet": 0.01}
#: Decoding the six PNGs of a site into the site store, per CPU core (measured on this machine).
PREP_SITES_PER_S_PER_CORE = 25.0
#: Host memory of the Python process, torch and CUDA context, before any data.
BASE_RAM_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Rates:
    """Throughputs the plan prices GPU work with, and where they come from."""

    train_images_per_s: float = ASSUMED_RATES["train_images_per_s"]
    infer_images_per_s: float = ASSUMED_RATES["infer_images_per_s"]
    source: str = "assumed (no GPU measured yet)"


def gpu_check_path() -> Path:
    """``reports/benchmarks/gpu_check.csv`` (written by the GPU benchmark, may not exist)."""
    return paths.reports_dir() / "benchmarks" / "gpu_check.csv"


def measured_rates(path: str | os.PathLike | None = None, *, image_size: int = 512) -> Rates | None:
    """Rates measured on a GPU by ``benchmarks/gpu_check.sh`` (its ``gpu_check.csv``), or None.

    The training rate is the best bf16 DenseNet-161 rate at ``image_size`` (rows of section ``train`` or
    ``max_batch`` with status ``ok``, ``bf16`` in ``what``); the check measures no plain inference pass, so
    the inference rate keeps the assumed ratio to training. An absent or unreadable file, or one without
    such a row (a ``--cpu-smoke`` run at a toy size), gives None: the assumed rates are used.
    """
    path = Path(path) if path is not None else gpu_check_path()
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except Exception:
        return None
    if not {"section", "what", "status", "image_size", "images_per_s"} <= set(table.columns):
        return None
    rate = pd.to_numeric(table["images_per_s"], errors="coerce")
    size = pd.to_numeric(table["image_size"], errors="coerce")
    rows = (table["section"].astype(str).isin(["train", "max_batch"]) & (table["status"].astype(str) == "ok")
            & table["what"].astype(str).str.contains("bf16") & (size == image_size) & (rate > 0))
    if not rows.any():
        return None
    ratio = ASSUMED_RATES["infer_images_per_s"] / ASSUMED_RATES["train_images_per_s"]
    t = float(rate[rows].max())
    return Rates(t, t * ratio, f"measured ({path}; inference at the assumed x{ratio:g} of training)")


# --------------------------------------------------------------------------------------------------
# What a data root holds


@dataclass(frozen=True)
class DataSummary:
    """Site counts of a data root (or of a synthetic set not generated yet)."""

    root: str
    image_size: int
    n_sites: int
    table: pd.DataFrame = field(repr=False)  # split, label, plate (one row per site)

    def sites(self, split: str, *, labelled: bool = True, plates=None) -> int:
        rows = self.table[self.table["split"] == split]
        if labelled:
            rows = rows[rows["label"] >= 0]
        if plates is not None:
            rows = rows[rows["plate"].astype(int).isin(list(plates))]
        return int(len(rows))

    def top_classes_held_out(self, k: int = 3) -> int:
        """Held-out labelled sites of the ``k`` most frequent training classes (notebook 05's Figure 9)."""
        train = self.table[(self.table["split"] == "train") & (self.table["label"] >= 0)]
        top = train["label"].value_counts().index[:k]
        test = self.table[(self.table["split"] == "test") & (self.table["label"] >= 0)]
        return int(test["label"].isin(top).sum())


def _image_size(root: Path, default: int = 512) -> int:
    """A synthetic set's declared image size (truth/params.json), else RxRx1's ``default``."""
    from rxlib.data.metadata import declared_setting

    return int(declared_setting(root, "image_size", default))


def summarise_data(data_root: str | os.PathLike) -> DataSummary:
    """Site counts of ``data_root`` from its metadata (no image is read)."""
    from rxlib.data import read_metadata
    from rxlib.data.splits import part_mask

    root = Path(data_root)
    table = read_metadata(root)
    counts = table[["split", "label", "plate"]].copy()
    # as training sees it: the training experiments, and the held-out sites (on the Kaggle layout the test
    # split plus the training experiments held out for validation, rxlib.data.splits.validation_experiments)
    counts["split"] = np.where(part_mask(table, "train"), "train", "test")
    return DataSummary(str(root), _image_size(root), len(table), counts)


def summarise_synthetic(profile: str, seed: int = 0) -> DataSummary:
    """Site counts of the synthetic set of ``profile`` from its design (nothing is rendered)."""
    from rxlib.synth.config import PROFILES
    from rxlib.synth.design import build_design

    if profile not in PROFILES:
        raise ValueError(f"no synthetic profile {profile!r} to plan from (known: {sorted(PROFILES)}); pass a data root")
    cfg = PROFILES[profile]
    tasks = build_design(cfg, seed).tasks
    table = pd.DataFrame({"split": [t.dataset for t in tasks], "label": [t.class_id for t in tasks],
                          "plate": [t.plate for t in tasks]})
    return DataSummary(f"synthetic {profile} (seed {seed})", int(cfg.image_size), len(table), table)


# --------------------------------------------------------------------------------------------------
# The plan


@dataclass
class Plan:
    """What a run of the notebooks would train and compute, and what it would cost.

    Attributes:
        profile: training profile; settings: its settings after overrides.
        models: one row per (notebook, model): action (train / reuse), architecture, epochs, images.
        passes: one row per pass over the data that is not training.
        notebooks: one row per notebook: GPU-hours, peak host RAM.
        rates: the rates used. prep: preparation (CPU-hours, disk). weights: lines on ImageNet weights.
        notes: other lines the reader needs (device, budget).
    """

    profile: str
    settings: Settings
    data: DataSummary
    models: pd.DataFrame
    passes: pd.DataFrame
    notebooks: pd.DataFrame
    rates: Rates
    prep: dict
    weights: list[str]
    notes: list[str]

    @property
    def total_gpu_hours(self) -> float:
        return float(self.notebooks["gpu_hours"].sum())


def _seconds_per_image(arch: str, image_size: int, rate: float) -> float:
    return ARCH_COST.get(arch, 1.0) * (image_size / 512) ** 2 / rate


def _training_images(train: dict, n_train: int, n_unlabelled: int) -> tuple[int, int, int]:
    """(labelled images per epoch, total images trained on, epochs with pseudo-labels)."""
    from rxlib.train.pseudo import alpha_schedule

    batch = int(train["batch_size"])
    steps = math.ceil(n_train / batch)
    if train.get("max_batches_per_epoch") is not None:
        steps = min(steps, int(train["max_batches_per_epoch"]))
    per_epoch = min(n_train, steps * batch)
    epochs = int(train["epochs"])
    pl_epochs = 0
    if train.get("pseudo_label") and n_unlabelled:
        pl_epochs = sum(alpha_schedule(t, train["pseudo_t1"], train["pseudo_t2"], train.get("pseudo_alpha_f", 1.0)) > 0
                        for t in range(1, epochs + 1))
    return per_epoch, epochs * per_epoch + pl_epochs * per_epoch, pl_epochs


def _model_row(notebook: str, label: str, name: str, cfg: RunConfig, data: DataSummary, rates: Rates,
               action: str, note: str) -> dict:
    train = cfg.train
    plates = cfg.data.get("plates")
    n_train = data.sites("train", plates=plates)
    n_val = data.sites("test", plates=plates)
    n_unl = data.sites("test", labelled=False, plates=plates)
    per_epoch, images, pl_epochs = _training_images(train, n_train, n_unl)
    arch = train["arch"]
    passes = (train["epochs"] if train.get("validate_each_epoch", True) else 0) + 1  # + the held-out predictions
    seconds = (images * _seconds_per_image(arch, data.image_size, rates.train_images_per_s)
               + passes * n_val * _seconds_per_image(arch, data.image_size, rates.infer_images_per_s))
    return {"notebook": notebook, "label": label, "model": name, "action": action, "arch": arch,
            "loss": train["loss"], "cutmix": bool(train["cutmix"]), "pseudo_label": bool(train["pseudo_label"]),
            "pretrained": train.get("pretrained", False), "epochs": int(train["epochs"]),
            "images_per_epoch": per_epoch, "pl_epochs": pl_epochs, "train_images": images,
            "data": data.root, "image_size": data.image_size, "budget": note,
            "gpu_hours": seconds / 3600 if action == "train" else 0.0}


def _passes(stem: str, s: Settings, data: DataSummary, cue: DataSummary | None, model_rows: list[dict],
            rates: Rates) -> list[dict]:
    """The passes over the data of notebook ``stem`` besides training (what its cells compute)."""
    main_arch = s.train["arch"]
    n_held = data.sites("test")
    rows: list[tuple[str, str, int, str, int]] = []  # (what, model, images, kind, image size)
    if stem == "01_dataset_stats":
        rows.append(("intensity statistics of up to 3000 sites (CPU)", "-", min(3000, data.n_sites), "cpu",
                     data.image_size))
    elif stem == "05_embeddings_tsne":
        for r in model_rows:
            rows.append((f"features of the 3 most frequent classes, held-out ({r['label']})", r["model"],
                         data.top_classes_held_out(3), "infer", data.image_size))
    elif stem == "07_gradcam":
        rows += [("held-out predictions (Figure 11 examples)", "main", n_held, "infer", data.image_size),
                 ("Grad-CAM of the Figure 11 examples", "main", 12, "grad", data.image_size),
                 ("Grad-CAMO of every held-out site", "main", n_held, "grad", data.image_size)]
        if cue is not None:
            n_cue = cue.sites("train")
            for model in ("main", "cheating"):
                rows += [(f"predictions on cue / clean training sites ({model})", model, 2 * n_cue, "infer",
                          cue.image_size),
                         (f"predictions on held-out sites ({model})", model, n_held, "infer", data.image_size),
                         (f"Grad-CAMO of 192 cue + 192 held-out sites ({model})", model, 384, "grad",
                          data.image_size)]
    elif stem == "08_channel_attention":
        rows += [("held-out predictions (best recognised group)", "main", n_held, "infer", data.image_size),
                 ("channel importance of 240 sites: eq. 15 at 2 layers, grad x input (3 backward passes)", "main",
                  3 * 240, "grad", data.image_size),
                 ("channel importance of 240 sites: occlusion (7 forward passes)", "main", 7 * 240, "infer",
                  data.image_size)]
    out = []
    for what, model, images, kind, size in rows:
        arch = next((r["arch"] for r in model_rows if r["model"] == model), main_arch)
        rate = rates.train_images_per_s if kind == "grad" else rates.infer_images_per_s
        hours = 0.0 if kind == "cpu" else images * _seconds_per_image(arch, size, rate) / 3600
        out.append({"notebook": stem, "what": what, "model": model, "images": int(images), "kind": kind,
                    "gpu_hours": hours})
    return out


def _in_memory(data: Mapping[str, Any]) -> bool:
    """Whether a data setting holds every site in host memory (``storage: memory``)."""
    return data.get("storage") == "memory"


#: Sites of the largest batch an explanation notebook holds at once (notebook 08's channel-importance
#: sample, ``sample_positions(..., 240, ...)``).
EXPLAIN_BATCH_SITES = 240


def _peak_ram(stem: str, s: Settings, data: DataSummary, model_rows: list[dict]) -> float:
    """Peak host RAM of a notebook in bytes: training data held in memory (or the loader's batches) and
    the sites the explanation cells read into memory (uint8)."""
    site_bytes = 6 * data.image_size ** 2
    train = s.train
    workers = max(1, int(train.get("num_workers", 0)))
    loader = workers * 2 * 2 * int(train["batch_size"]) * site_bytes * 4  # prefetch 2, labelled + unlabelled, float32
    need = [loader]
    if any(r["action"] == "train" for r in model_rows) and _in_memory(s.data):
        need.append(data.n_sites * site_bytes)
    if _in_memory(s.data):  # the held-out sites in RAM (uint8)
        held = data.sites("test") * site_bytes
    else:  # read lazily through the store: the largest batch held at once is notebook 08's channel-importance
        held = EXPLAIN_BATCH_SITES * site_bytes * 4  # sample, as float32
    if stem in ("05_embeddings_tsne", "07_gradcam", "08_channel_attention"):
        need.append(held + loader)
    return BASE_RAM_BYTES + max(need)


def weights_status(configs: list[RunConfig]) -> list[str]:
    """One line per architecture on its ImageNet weights: asked for or not, present or not, and the fix."""
    from rxlib.models.backbones import PretrainedWeightsUnavailable, pretrained_cache_path

    lines, seen = [], set()
    for cfg in configs:
        arch, pretrained = cfg.train["arch"], cfg.train.get("pretrained", False)
        if (arch, str(pretrained)) in seen:
            continue
        seen.add((arch, str(pretrained)))
        if pretrained is False:
            lines.append(f"{arch}: pretrained=false: trained from scratch (the paper fine-tunes ImageNet weights; "
                         "--set train.pretrained=true uses them from the torch cache)")
            continue
        if isinstance(pretrained, str):
            ok = Path(pretrained).expanduser().is_file()
            lines.append(f"{arch}: pretrained={pretrained}: {'present' if ok else 'MISSING'}")
            continue
        try:
            path = pretrained_cache_path(arch)
        except PretrainedWeightsUnavailable:
            lines.append(f"{arch}: pretrained=true but no ImageNet weights exist for it: --set train.pretrained=false")
            continue
        if path.is_file():
            lines.append(f"{arch}: pretrained=true: ImageNet weights present at {path}")
        else:
            lines.append(f"{arch}: pretrained=true: ImageNet weights MISSING, expected at {path} (nothing is "
                         f"downloaded: copy torchvision's {path.name} there, or set TORCH_HOME to a folder whose "
                         "hub/checkpoints/ holds it; or --set train.pretrained=false to train from scratch, "
                         "which is not the paper's recipe)")
    return lines


def missing_weights(configs: list[RunConfig]) -> list[str]:
    """The lines of :func:`weights_status` that report missing weights."""
    return [line for line in weights_status(configs) if "MISSING" in line or "no ImageNet weights" in line]


def build_plan(profile: str, data_root: str | os.PathLike | None = None, *, overrides=None, seed: int = 0,
               notebooks=None, rates: Rates | None = None, data: DataSummary | None = None) -> Plan:
    """Price a run of the notebooks: models, passes, GPU-hours, preparation, peak RAM, weights.

    Args:
        profile: training profile (``smoke``, ``paper-mini``, ``paper``).
        data_root: the data root whose metadata gives the site counts (no image is read); None uses the
            design of the profile's synthetic set.
        overrides: ``--set`` overrides (see :func:`rxlib.profiles.settings`).
        seed: the seed (of the synthetic sets).
        notebooks: notebook stems to plan (default all of :func:`notebook_model_names`).
        rates: throughputs; default :func:`measured_rates` if ``gpu_check.csv`` exists, else the assumed ones.
        data: a ready :class:`DataSummary` (instead of ``data_root``).

    Raises:
        ValueError: unknown profile, setting or notebook; a bad value.
    """
    s = profile_settings(profile, overrides)
    if rates is None:
        rates = measured_rates() or Rates()
    if data is None:
        if data_root is not None:
            data = summarise_data(data_root)
        else:
            from rxlib.data.roots import synthetic_profile

            data = summarise_synthetic(synthetic_profile(profile), seed)
    table = notebook_model_names(profile)
    stems = list(table) if notebooks is None else [_notebook_stem(n, profile) for n in notebooks]
    cue = data if any(MODELS[n].cue for st in stems for n in table[st].values()) else None
    trained: dict[tuple, str] = {}
    model_rows, pass_rows, nb_rows, configs = [], [], [], []
    note = budget_note(s)
    for stem in stems:
        rows = []
        for label, name in table[stem].items():
            cfg = model_config(s, name)
            configs.append(cfg)
            summary = data
            ident = (cfg.config_hash(), summary.root)
            action = "train" if ident not in trained else f"reuse ({trained[ident]})"
            trained.setdefault(ident, stem.split("_", 1)[0])
            rows.append(_model_row(stem, label, name, cfg, summary, rates, action,
                                   note if MODELS[name].comparison else "full"))
        empty = [r["label"] for r in rows if r["action"] == "train" and r["images_per_epoch"] == 0]
        if empty:
            raise ValueError(f"{stem}: model(s) {', '.join(map(str, empty))} would train on no labelled site of "
                             f"{data.root} (budget.comparison_plates={s.budget.get('comparison_plates')!r}?): "
                             "choose plates the data set has")
        for group in compared_groups(stem, [r["label"] for r in rows]):
            check_distinct(stem, {r["label"]: f"{model_config(s, r['model']).config_hash()}@{r['data']}" for r in rows
                                  if r["label"] in group})
        passes = _passes(stem, s, data, cue, rows, rates)
        model_rows += rows
        pass_rows += passes
        nb_rows.append({"notebook": stem,
                        "train_gpu_hours": sum(r["gpu_hours"] for r in rows),
                        "pass_gpu_hours": sum(p["gpu_hours"] for p in passes),
                        "peak_ram_gb": _peak_ram(stem, s, data, rows) / 2**30})
    notebooks_frame = pd.DataFrame(nb_rows)
    notebooks_frame["gpu_hours"] = notebooks_frame["train_gpu_hours"] + notebooks_frame["pass_gpu_hours"]
    site_bytes = 6 * data.image_size ** 2
    prep = {"sites": data.n_sites, "cpu_hours": data.n_sites / PREP_SITES_PER_S_PER_CORE / 3600,
            "disk_gb": data.n_sites * site_bytes / 1e9}
    notes = []
    problem = device_problem(str(s.train.get("device", "cpu")))
    if problem:
        notes.append(f"{problem} (far slower than the GPU-hours above)")
    return Plan(profile, s, data, pd.DataFrame(model_rows), pd.DataFrame(pass_rows), notebooks_frame, rates, prep,
                weights_status(configs), notes)


def requested_configs(profile: str, overrides=None, notebooks=None) -> list[RunConfig]:
    """The run configs of every model the given notebooks ask for (for checks before a run)."""
    s = profile_settings(profile, overrides)
    table = notebook_model_names(profile)
    stems = list(table) if notebooks is None else [_notebook_stem(n, profile) for n in notebooks]
    return [model_config(s, name) for st in stems for name in table[st].values()]


def format_plan(plan: Plan) -> str:
    """The plan as text: settings, models per notebook, passes, cost per notebook and in total."""
    s = plan.settings
    r = plan.rates
    lines = [f"plan: profile {plan.profile!r} on {plan.data.root} ({plan.data.n_sites:,} sites, "
             f"{plan.data.image_size}x{plan.data.image_size}; train {plan.data.sites('train'):,} labelled, "
             f"held-out {plan.data.sites('test'):,} labelled of {plan.data.sites('test', labelled=False):,})"]
    if s.overrides:
        lines.append("overrides: " + ", ".join(f"{k}={v!r}" for k, v in s.overrides.items()))
    lines.append(f"rates: {r.train_images_per_s:g} training and {r.infer_images_per_s:g} inference images/s of "
                 f"densenet161 at 512x512 on one H100/H200-class GPU in bf16, {r.source}; other architectures x "
                 + ", ".join(f"{a} {c:g}" for a, c in ARCH_COST.items() if a != "densenet161")
                 + "; cost scales with pixels")
    lines.append("comparison budget (models marked 'reduced'): "
                 + (budget_note(s) or "none (comparison models trained like the main model)"))
    lines.append("")
    lines.append("models (images = labelled images per epoch; trained = all images the model sees, with the "
                 "unlabelled half of pseudo-label steps):")
    header = f"  {'notebook':<24}{'label':<24}{'model':<14}{'action':<12}{'arch':<14}{'loss':<10}{'CM':<4}{'PL':<4}" \
             f"{'epochs':>7}{'images/ep':>11}{'trained':>12}{'GPU-h':>8}  budget"
    lines.append(header)
    for row in plan.models.itertuples():
        lines.append(f"  {row.notebook:<24}{str(row.label):<24}{row.model:<14}{row.action:<12}{row.arch:<14}"
                     f"{row.loss:<10}{'y' if row.cutmix else 'n':<4}{'y' if row.pseudo_label else 'n':<4}"
                     f"{row.epochs:>7}{row.images_per_epoch:>11,}{row.train_images:>12,}{row.gpu_hours:>8.2f}  "
                     f"{'full' if row.budget == 'full' else 'reduced' if row.budget else 'full'}")
    lines.append("")
    lines.append("passes over the data besides training:")
    for row in plan.passes.itertuples():
        lines.append(f"  {row.notebook:<24}{row.what:<92}{row.images:>10,} images{row.gpu_hours:>8.2f} GPU-h")
    lines.append("")
    lines.append(f"  {'notebook':<24}{'train GPU-h':>12}{'passes GPU-h':>13}{'GPU-h':>8}{'peak RAM GB':>13}")
    for row in plan.notebooks.itertuples():
        lines.append(f"  {row.notebook:<24}{row.train_gpu_hours:>12.2f}{row.pass_gpu_hours:>13.2f}{row.gpu_hours:>8.2f}"
                     f"{row.peak_ram_gb:>13.1f}")
    lines.append(f"  {'total':<24}{plan.notebooks['train_gpu_hours'].sum():>12.2f}"
                 f"{plan.notebooks['pass_gpu_hours'].sum():>13.2f}{plan.total_gpu_hours:>8.2f}"
                 f"{plan.notebooks['peak_ram_gb'].max():>13.1f}")
    lines.append("")
    lines.append(f"preparation: decode {plan.prep['sites']:,} sites once into a site store: "
                 f"{plan.prep['cpu_hours']:.1f} CPU-hours at {PREP_SITES_PER_S_PER_CORE:g} sites/s per core "
                 f"(divide by the cores used), {plan.prep['disk_gb']:.1f} GB of disk (sites x 6 x H x W bytes)")
    lines.append("ImageNet weights:")
    lines += [f"  {line}" for line in plan.weights]
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


__all__ = [
    "ARCH_COST", "ASSUMED_RATES", "COMPARED", "COMPARISON_NOTEBOOKS", "DataSummary", "MODELS", "ModelSpec", "Plan", "Rates",
    "VERDICT_NOTEBOOKS",
    "apply_budget", "budget_note", "build_plan", "check_distinct", "compared_groups", "format_plan", "measured_rates",
    "missing_weights", "model_config", "notebook_model_names", "notebook_models",
    "requested_configs", "summarise_data", "summarise_synthetic", "train_model", "weights_status",
]
