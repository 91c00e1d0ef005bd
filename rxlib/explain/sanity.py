"""Sanity checks for explanations (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that is meant to say what *the model* looks at must change when the model is
destroyed. Two tests:

- **cascading model-parameter randomisation** (:func:`cascading_randomisation`): the layers of a copy
  of the trained model are re-initialised from the top (the heads) down to the stem, one block at a
  time, and the explanations are recomputed after each step and compared with the trained model's;
- **label randomisation** (:func:`compare_models`): the explanations of the trained model are compared
  with those of the same architecture trained on shuffled labels (training is the registry's job).

Explanations are given as a callable ``explain(model) -> {method: (B, ...) array}`` that computes
every method for a fixed batch and fixed targets (the true classes, so that a randomised model is
asked about the same class): :func:`gradcam_explainer` for Grad-CAM, :func:`channel_explainer` for
every channel-importance method of :func:`rxlib.explain.channels.importance_methods`, joined with
:func:`join_explainers`.

Similarity before/after, per image: Spearman rank correlation of the flattened explanations, and
SSIM (Wang et al. 2004) of 2-d maps, each min-max scaled to [0, 1] (:func:`ssim`, our own, equal to
scikit-image's ``structural_similarity`` with its defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03,
sample covariance; scikit-image is not a dependency of the package, the test compares the two where
it is installed). Where one explanation is constant and the other is not, their rank correlation is
undefined; it is counted as 0 (no shared ordering); two equal constant explanations count as 1.

Pass / fail (:func:`sanity_verdicts`): a method passes when the mean Spearman similarity between the
trained and the fully randomised model's explanations is below **0.5**, with its whole bootstrap
interval (a :class:`~rxlib.explain.verdicts.Verdict`; undecided when the interval straddles 0.5).
Why 0.5: in Adebayo et al. (Figs. 2 and 4), methods that depend on the model (gradients, Grad-CAM,
integrated gradients) fall to rank correlations near 0 (below about 0.3) once the network is
randomised down to its first blocks, while those that they flag (guided backpropagation, guided
Grad-CAM) stay high (about 0.6 to 1), behaving like edge detectors of the input. 0.5 lies between the
two groups; a rank correlation of 0.5 means at most a quarter (rho squared) of the ordering is shared,
so a method below it has lost most of what it said about the trained model. A method whose
explanation is the same whatever the weights (e.g. the input's own channel means) scores 1 and fails.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from rxlib.explain.verdicts import Verdict, randomisation_verdict

#: Spearman similarity below which an explanation counts as changed (see the module docstring).
SPEARMAN_THRESHOLD = 0.5

Explainer = Callable[[nn.Module], Mapping[str, np.ndarray]]


# --- similarity ----------------------------------------------------------------------------------------


def _flat(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 2:
        raise ValueError(f"explanations must be (B, ...) with one row per image, got shape {values.shape}")
    return values.reshape(len(values), -1)


def spearman_similarity(before, after) -> np.ndarray:
    """Spearman rank correlation of each image's explanations, ``(B,)``; constant rows as in the module
    docstring (0 against a non-constant row, 1 for two equal constant rows)."""
    from scipy.stats import rankdata

    a, b = _flat(before), _flat(after)
    if a.shape != b.shape:
        raise ValueError(f"explanations differ in shape: {a.shape} and {b.shape}")
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(axis=1) / denom
    const_a, const_b = np.ptp(a, axis=1) == 0, np.ptp(b, axis=1) == 0
    rho[const_a ^ const_b] = 0.0
    both = const_a & const_b
    rho[both] = np.where(np.all(a[both] == b[both], axis=1), 1.0, 0.0)
    return rho


def ssim(image1: np.ndarray, image2: np.ndarray, *, data_range: float, win_size: int = 7,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean structural similarity of two 2-d images (Wang et al. 2004), as scikit-image's
    ``structural_similarity(image1, image2, data_range=data_range)`` computes it: uniform
    ``win_size`` window (reflect border), sample covariance, the border of ``(win_size - 1) // 2``
    pixels cropped before the mean.

    Raises:
        ValueError: shapes differ, not 2-d, the window does not fit, or a bad data range.
    """
    from scipy.ndimage import uniform_filter

    x, y = np.asarray(image1, dtype=np.float64), np.asarray(image2, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two 2-d images of one shape, got {x.shape} and {y.shape}")
    if win_size < 3 or win_size % 2 == 0 or win_size > min(x.shape):
        raise ValueError(f"win_size must be odd, >= 3 and at most the image side {min(x.shape)}, got {win_size}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    cov_norm = win_size ** 2 / (win_size ** 2 - 1)
    ux, uy = uniform_filter(x, win_size), uniform_filter(y, win_size)
    vx = cov_norm * (uniform_filter(x * x, win_size) - ux * ux)
    vy = cov_norm * (uniform_filter(y * y, win_size) - uy * uy)
    vxy = cov_norm * (uniform_filter(x * y, win_size) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return float(s[pad:s.shape[0] - pad, pad:s.shape[1] - pad].mean())


def _unit_scale(image: np.ndarray) -> np.ndarray:
    span = float(np.ptp(image))
    return (image - image.min()) / span if span > 0 else np.zeros_like(image)


def ssim_similarity(before, after) -> np.ndarray:
    """SSIM of each image's 2-d map, each min-max scaled to [0, 1] (``data_range=1``), ``(B,)``; NaN
    for explanations that are not maps (``(B, C)`` channel importances) or smaller than 3x3."""
    a = before.detach().cpu().numpy() if hasattr(before, "detach") else np.asarray(before, dtype=np.float64)
    b = after.detach().cpu().numpy() if hasattr(after, "detach") else np.asarray(after, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"explanations differ in shape: {a.shape} and {b.shape}")
    if a.ndim != 3 or min(a.shape[1:]) < 3:
        return np.full(len(a), np.nan)
    side = min(a.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    return np.array([ssim(_unit_scale(x), _unit_scale(y), data_range=1.0, win_size=win) for x, y in zip(a, b)])


def explanation_similarity(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per method and image: ``spearman`` and ``ssim`` between two sets of explanations (same methods)."""
    missing = set(before) ^ set(after)
    if missing:
        raise ValueError(f"methods differ between the two sets: {sorted(missing)}")
    frames = [pd.DataFrame({"method": method, "image": np.arange(len(_flat(before[method]))),
                            "spearman": spearman_similarity(before[method], after[method]),
                            "ssim": ssim_similarity(before[method], after[method])}) for method in before]
    return pd.concat(frames, ignore_index=True)


# --- explainers ----------------------------------------------------------------------------------------


def _numpy(values) -> np.ndarray:
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def gradcam_explainer(images: torch.Tensor, cell_type: torch.Tensor | None, targets, *, layer: str,
                      name: str = "Grad-CAM", head: str = "logits") -> Explainer:
    """``explain(model) -> {name: (B, H, W)}``: Grad-CAM of the fixed targets at ``layer``, upsampled to
    the image (not normalised: Spearman does not care, SSIM scales each map itself)."""
    from rxlib.explain.cam import grad_cam

    targets = [int(t) for t in np.asarray(targets)]

    def explain(model: nn.Module) -> dict[str, np.ndarray]:
        return {name: _numpy(grad_cam(model, images, cell_type, targets, layer=layer, head=head, upsample=True))}

    return explain


def channel_explainer(images: torch.Tensor, cell_type: torch.Tensor | None, labels, *,
                      cam_layers: Mapping[str, str], methods: Sequence[str] = ("occlusion_mean", "occlusion_zero",
                                                                                  "grad_x_input"),
                      batch_size: int = 64) -> Explainer:
    """``explain(model) -> {method: (B, C)}``: every channel-importance method of
    :func:`rxlib.explain.channels.importance_methods` (eq. 15 in all its readings at each CAM layer,
    and the CAM-free ``methods``) for the images' own labels."""
    from rxlib.explain.channels import importance_methods

    def explain(model: nn.Module) -> dict[str, np.ndarray]:
        return importance_methods(model, images, cell_type, labels, cam_layers=dict(cam_layers),
                                  batch_size=batch_size, methods=tuple(methods))

    return explain


def join_explainers(*explainers: Explainer) -> Explainer:
    """One explainer computing all of several (method names must not repeat)."""

    def explain(model: nn.Module) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for e in explainers:
            found = e(model)
            clash = set(found) & set(out)
            if clash:
                raise ValueError(f"two explainers give the same methods {sorted(clash)}")
            out.update(found)
        return out

    return explain


# --- cascading randomisation ---------------------------------------------------------------------------


def randomisation_steps(model: nn.Module) -> list[tuple[str, list[nn.Module | nn.Parameter]]]:
    """The blocks of a model in the order the cascading test randomises them: top (heads) first, stem last.

    An RxNet gives ``heads`` (softmax head and arc-margin templates), ``neck`` and then the children of
    ``features`` with parameters from the last (``norm5``, ``denseblock4``...) to the first (``conv0``).
    A wrapper with an ``inner`` RxNet (DCMIX) adds its own layers (``mix``) last. Any other module:
    its direct children with parameters, last first.
    """
    inner = getattr(model, "inner", None)
    if isinstance(inner, nn.Module):
        steps = randomisation_steps(inner)
        rest = [(f"{n}", [m]) for n, m in reversed(list(model.named_children())) if n != "inner"
                and any(True for _ in m.parameters())]
        return steps + rest
    if hasattr(model, "features") and hasattr(model, "softmax_head"):
        steps: list[tuple[str, list]] = [("heads", [model.softmax_head] + ([model.arc_templates]
                                                                           if hasattr(model, "arc_templates") else []))]
        if hasattr(model, "neck") and any(True for _ in model.neck.parameters()):
            steps.append(("neck", [model.neck]))
        steps += [(n, [m]) for n, m in reversed(list(model.features.named_children())) if any(True for _ in m.parameters())]
        return steps
    steps = [(n, [m]) for n, m in reversed(list(model.named_children())) if any(True for _ in m.parameters())]
    own = [p for _, p in model.named_parameters(recurse=False)]
    if own:
        steps.insert(0, ("own parameters", own))
    if not steps:
        raise ValueError(f"{type(model).__name__} has no parameters to randomise")
    return steps


def _reinitialise(parts: Iterable[nn.Module | nn.Parameter]) -> None:
    """Back to an initialisation: ``reset_parameters`` where a layer has it (convolutions, linear
    layers, BatchNorm with its running statistics, PReLU), Xavier-uniform (2-d and up) or N(0, 0.1)
    for bare parameters (the arc-margin templates)."""

    def init(p: nn.Parameter) -> None:
        nn.init.xavier_uniform_(p) if p.ndim >= 2 else nn.init.normal_(p, std=0.1)

    with torch.no_grad():
        for part in parts:
            if isinstance(part, nn.Parameter):
                init(part)
                continue
            for module in part.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                else:
                    for p in module.parameters(recurse=False):
                        init(p)


def cascading_randomisation(model: nn.Module, explain: Explainer, *, seed: int = 0,
                            blocks: Sequence[str] | None = None) -> pd.DataFrame:
    """Adebayo et al.'s cascading model-parameter randomisation.

    A deep copy of ``model`` is randomised block by block from the top (:func:`randomisation_steps`);
    after each step every method of ``explain`` is recomputed and compared with the trained model's
    explanations. The model itself is not changed.

    Args:
        model: the trained model.
        explain: ``explain(model) -> {method: (B, ...)}`` (:func:`gradcam_explainer`,
            :func:`channel_explainer`, :func:`join_explainers`).
        seed: seeds the re-initialisation (step ``k`` uses ``seed + k``).
        blocks: names of :func:`randomisation_steps` to randomise, in this order (default: all, top
            first); e.g. ``['heads', 'neck', 'denseblock4']`` for a cheaper partial cascade.

    Returns:
        One row per step, method and image: ``step`` (1 = the top block randomised), ``block`` (the
        block randomised at this step), ``randomised`` (all blocks randomised so far), ``method``,
        ``image``, ``spearman``, ``ssim``.
    """
    reference = {k: _numpy(v) for k, v in explain(model).items()}
    work = copy.deepcopy(model)
    work.eval()
    available = dict(randomisation_steps(work))
    if blocks is None:
        blocks = list(available)
    unknown = [b for b in blocks if b not in available]
    if unknown:
        raise KeyError(f"no blocks {unknown} in {type(model).__name__}; blocks: {list(available)}")
    plan = [(b, available[b]) for b in blocks]
    frames, done = [], []
    for k, (name, parts) in enumerate(plan, start=1):
        torch.manual_seed(seed + k)
        _reinitialise(parts)
        done.append(name)
        after = {m: _numpy(v) for m, v in explain(work).items()}
        sim = explanation_similarity(reference, after)
        sim.insert(0, "randomised", "+".join(done))
        sim.insert(0, "block", name)
        sim.insert(0, "step", k)
        frames.append(sim)
    return pd.concat(frames, ignore_index=True)


def randomisation_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean similarity per step and method of :func:`cascading_randomisation` (or per method of
    :func:`compare_models`): ``spearman``, ``ssim`` and the number of images."""
    keys = [c for c in ("step", "block", "method") if c in frame.columns]
    out = frame.groupby(keys, sort=True)[["spearman", "ssim"]].mean()
    out.insert(0, "n", frame.groupby(keys, sort=True)["spearman"].size())
    return out.reset_index()


def sanity_verdicts(frame: pd.DataFrame, *, test: str = "model parameters", threshold: float = SPEARMAN_THRESHOLD,
                    seeds: Iterable[int] = (), **ci) -> list[Verdict]:
    """One :class:`~rxlib.explain.verdicts.Verdict` per method: is the Spearman similarity after the last
    step (full randomisation) below ``threshold``? A method that does not pass is flagged (holds False:
    its maps barely change; None: undecided).

    Args:
        frame: :func:`cascading_randomisation` (the last step is used) or :func:`compare_models` output.
        test: ``'model parameters'`` or ``'labels'`` (named in the verdict).
    """
    if "step" in frame.columns:
        frame = frame[frame["step"] == frame["step"].max()]
    return [randomisation_verdict(method, part["spearman"].to_numpy(float), test=test, threshold=threshold,
                                  seeds=seeds, **ci) for method, part in frame.groupby("method", sort=True)]


def compare_models(model: nn.Module, other: nn.Module, explain: Explainer) -> pd.DataFrame:
    """Label randomisation: the explanations of ``model`` (trained on the true labels) against those of
    ``other`` (the same architecture trained on shuffled labels), per method and image.

    Returns:
        Columns ``method``, ``image``, ``spearman``, ``ssim`` (:func:`sanity_verdicts` with
        ``test='labels'`` turns it into verdicts).
    """
    return explanation_similarity({k: _numpy(v) for k, v in explain(model).items()},
                                  {k: _numpy(v) for k, v in explain(other).items()})


# --- reports: what a notebook shows ----------------------------------------------------------------------


@dataclass
class SanityReport:
    """Both tests of one set of explanations, ready to show.

    Attributes:
        cascade: :func:`cascading_randomisation` rows (step, block, method, image, spearman, ssim).
        summary: mean similarity per test, step and method (``test`` is ``'model parameters'`` or
            ``'labels'``; the label test has one step, 0).
        verdicts: one :class:`~rxlib.explain.verdicts.Verdict` per method and test (:func:`sanity_verdicts`).
    """

    cascade: pd.DataFrame
    summary: pd.DataFrame
    verdicts: list


def sanity_report(model: nn.Module, explain: Explainer, *, pair: tuple[nn.Module, nn.Module] | None = None,
                  seed: int = 0, seeds: Iterable[int] = (), blocks: Sequence[str] | None = None) -> SanityReport:
    """Cascading model-parameter randomisation of ``model`` and, given ``pair = (trained, label_shuffled)``
    (two models of one recipe, on true and on shuffled labels), label randomisation; with their verdicts.

    Args:
        model: the trained model whose explanations are checked.
        explain: the explanations (:func:`gradcam_explainer`, :func:`channel_explainer`).
        pair: the two models of the label randomisation test (None: that test is left out).
        seed: seeds the re-initialisation. seeds: the training seeds, named in the verdicts.
        blocks: the cascade's blocks (default all, top first).
    """
    cascade = cascading_randomisation(model, explain, seed=seed, blocks=blocks)
    summaries = [randomisation_summary(cascade).assign(test="model parameters")]
    verdicts = sanity_verdicts(cascade, seeds=seeds)
    if pair is not None:
        labels = compare_models(pair[0], pair[1], explain)
        summaries.append(randomisation_summary(labels).assign(test="labels", step=0, block="all (shuffled labels)"))
        verdicts += sanity_verdicts(labels, test="labels", seeds=seeds)
    summary = pd.concat(summaries, ignore_index=True)
    return SanityReport(cascade, summary[["test", "step", "block", "method", "n", "spearman", "ssim"]], verdicts)


def gradcam_sanity(model: nn.Module, dataset, positions, *, layer: str, pair=None, device: str | None = None,
                   seed: int = 0, seeds: Iterable[int] = ()) -> SanityReport:
    """:func:`sanity_report` of Grad-CAM at ``layer`` for the sites ``positions`` of ``dataset``, each
    explained for its own label (on ``device`` if given; the models are moved back afterwards)."""
    from rxlib.explain.sites import site_batch

    batch = site_batch(dataset, positions)
    with _all_on_device([model, *(pair or ())], device) as target:
        explain = gradcam_explainer(batch["image"].to(target), batch["cell_type"].to(target), batch["label"],
                                    layer=layer)
        return sanity_report(model, explain, pair=pair, seed=seed, seeds=seeds)


def channel_sanity(model: nn.Module, dataset, positions, *, cam_layers: Mapping[str, str], pair=None,
                   methods: Sequence[str] = ("occlusion_mean", "grad_x_input"), seed: int = 0,
                   seeds: Iterable[int] = ()) -> SanityReport:
    """:func:`sanity_report` of every channel-importance method (eq. 15 at ``cam_layers`` and the CAM-free
    ``methods``) for the sites ``positions`` of ``dataset`` and their own labels (on the CPU)."""
    from rxlib.explain.sites import site_batch

    batch = site_batch(dataset, positions)
    explain = channel_explainer(batch["image"], batch["cell_type"], batch["label"], cam_layers=cam_layers,
                                methods=methods)
    return sanity_report(model, explain, pair=pair, seed=seed, seeds=seeds)


@contextmanager
def _all_on_device(models, device):
    """Every model on ``device`` for the duration (one :func:`rxlib.train.loop.on_device` each; None: the
    first model's device); yields that device."""
    from rxlib.train.loop import on_device

    with ExitStack() as stack:
        targets = [stack.enter_context(on_device(m, device)) for m in models]
        yield targets[0]
