"""Verdicts: each claim the notebooks test, as an estimate with a bootstrap interval, its seeds and a
stated criterion, and a sentence generated from those numbers.

A :class:`Verdict` says *holds* when the whole confidence interval lies on the claim's side of the
criterion, *does not hold* when the whole interval lies on the other side, and *undecided* when the
interval straddles the criterion (or no interval can be computed, e.g. from a single value). No
judging text is written beside a number: :meth:`Verdict.sentence` builds it from the fields.

Intervals come from :func:`bootstrap_ci` (``scipy.stats.bootstrap``, BCa by default, a fixed random
state): one-sample means, paired differences (the same sites, classes or seeds measured twice),
two independent samples, and grouped (cluster) resampling where units share an experiment or a seed.

The constructors (:func:`loss_oscillation_verdict`, :func:`pseudo_label_verdict`,
:func:`filter_bands_verdict`, :func:`cheating_verdict`, :func:`grad_camo_area_verdict`,
:func:`control_check_verdict`, :func:`planted_channels_verdicts`, :func:`randomisation_verdict`)
take per-seed or per-unit measurements, never fixed numbers. :func:`write_verdicts` merges a
notebook's rows into ``reports/verdicts.csv``; :func:`verdicts_table` and :func:`caption` present them.

Unit helpers turn a single model into per-unit values, so that a single-seed run still gets an
interval (over classes, sites or filters; say so in ``unit``): :func:`silhouette_per_item` here, and
beside the measures they break down, :func:`rxlib.explain.embeddings.template_spread_per_class`,
:func:`rxlib.explain.filters.filter_unit_flags` and :func:`rxlib.explain.channels.per_class_recovery`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

#: Sources a claim can come from.
SOURCES = ("paper", "Grad-CAMO", "DCMIX", "Adebayo et al. 2018")

#: Columns of ``reports/verdicts.csv``, in order.
VERDICT_COLUMNS = ("notebook", "claim", "source", "statement", "quantity", "estimate", "ci_low", "ci_high",
                   "confidence", "n", "unit", "n_seeds", "seeds", "criterion", "verdict", "interval_method",
                   "sentence")


# --- bootstrap -----------------------------------------------------------------------------------------


def _finite(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite values; drop them first")
    return arr


def bootstrap_ci(data: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], *, paired: bool = False,
                 confidence: float = 0.95, method: str = "BCa", n_resamples: int = 9999,
                 random_state: int = 0) -> tuple[float, float, str]:
    """A bootstrap confidence interval with ``scipy.stats.bootstrap``, reproducible.

    Args:
        data: one or more 1-d samples.
        statistic: vectorised ``statistic(*samples, axis=-1)``.
        paired: resample the samples together (same units measured several times).
        confidence: two-sided confidence level.
        method: ``'BCa'`` or ``'percentile'``. BCa falls back to percentile where its acceleration
            is undefined (it then returns NaN); the third value says which was used.
        n_resamples: bootstrap resamples.
        random_state: seed of the resampling (a fixed seed: the same data give the same interval).

    Returns:
        ``(low, high, method_used)``; ``(nan, nan, 'none')`` when a sample has fewer than two values;
        a zero-width interval (``'degenerate'``) when every sample is constant.
    """
    from scipy.stats import bootstrap

    samples = [np.asarray(d, dtype=np.float64).ravel() for d in data]
    if any(len(s) < 2 for s in samples):
        return float("nan"), float("nan"), "none"
    if all(np.ptp(s) == 0 for s in samples):
        value = float(statistic(*samples, axis=-1))
        return value, value, "degenerate"
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    import warnings

    for m in dict.fromkeys((method, "percentile")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the fallback
            res = bootstrap(tuple(samples), statistic, paired=paired, vectorized=True, confidence_level=confidence,
                            method=m, n_resamples=n_resamples, rng=np.random.default_rng(random_state))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(low) and np.isfinite(high):
            return low, high, m
    return float("nan"), float("nan"), "none"


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _diff_means(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _ratio_of_sums(s, c, axis=-1):
    return np.sum(s, axis=axis) / np.sum(c, axis=axis)


@dataclass(frozen=True, eq=False)
class Sample:
    """The measurements behind an estimate, kept with its verdict so that seeds can be pooled
    (:func:`rxlib.explain.seeds.pool_verdicts`).

    Attributes:
        kind: ``'mean'`` (the mean of ``first``; a paired difference is the mean of the differences) or
            ``'two-sample'`` (``mean(first) - mean(second)``, independent samples).
        first, second: the values (``second`` empty for ``'mean'``).
        groups: with ``'mean'``, the cluster of each value (resampled whole); empty: each value alone.
        bounds: the values the statistic can take, where the caller knows them (a rate of hits: ``(0, 1)``;
            a mean correlation: ``(-1, 1)``); a pooled interval is clipped to them. None: unbounded.
    """

    kind: str
    first: np.ndarray
    second: np.ndarray = field(default_factory=lambda: np.zeros(0))
    groups: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None


class Estimate(tuple):
    """``(estimate, low, high, method_used)`` as :func:`mean_ci` and :func:`difference_ci` return it, with
    the :class:`Sample` it came from as ``.sample`` (None for an estimate made by hand)."""

    sample: Sample | None

    def __new__(cls, estimate: float, low: float, high: float, method: str, sample: Sample | None = None):
        self = super().__new__(cls, (estimate, low, high, method))
        self.sample = sample
        return self

    def __getnewargs__(self):  # copy and pickle rebuild it with its sample
        return (*self, self.sample)


def mean_ci(values, *, groups: Sequence | None = None, bounds: tuple[float, float] | None = None,
            **kwargs) -> tuple[float, float, float, str]:
    """Mean of ``values`` with a bootstrap interval; with ``groups``, whole groups are resampled
    (cluster bootstrap: the statistic is the pooled mean, sum of values over sum of counts). ``bounds``:
    the values the mean can take, kept with the sample for pooling (:class:`Sample`).

    Returns:
        ``(estimate, low, high, method_used)``.
    """
    values = _finite(values, "values")
    if len(values) == 0:
        raise ValueError("no values to summarise")
    if groups is None:
        return Estimate(float(values.mean()), *bootstrap_ci((values,), _mean, **kwargs),
                        Sample("mean", values, bounds=bounds))
    groups = np.asarray(groups)
    if len(groups) != len(values):
        raise ValueError(f"{len(groups)} group labels for {len(values)} values")
    frame = pd.DataFrame({"g": groups, "v": values}).groupby("g")["v"].agg(["sum", "count"])
    low, high, used = bootstrap_ci((frame["sum"].to_numpy(float), frame["count"].to_numpy(float)), _ratio_of_sums,
                                   paired=True, **kwargs)
    return Estimate(float(values.mean()), low, high, f"{used}, grouped ({len(frame)} groups)",
                    Sample("mean", values, groups=tuple(str(g) for g in groups), bounds=bounds))


def difference_ci(a, b, *, paired: bool, groups: Sequence | None = None, **kwargs) -> tuple[float, float, float, str]:
    """``mean(a) - mean(b)`` with a bootstrap interval.

    Args:
        a, b: measurements; with ``paired`` the same units in the same order (per site, class, seed).
        paired: resample units, keeping each pair together (the interval of the mean difference).
        groups: with ``paired``, resample whole groups of pairs (e.g. sites of one experiment).

    Returns:
        ``(estimate, low, high, method_used)``.
    """
    a, b = _finite(a, "a"), _finite(b, "b")
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
        pooled = mean_ci(a - b, groups=groups, **kwargs)
        return Estimate(*pooled[:3], f"{pooled[3]}, paired", pooled.sample)
    if groups is not None:
        raise ValueError("groups need paired samples")
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"empty sample ({len(a)} and {len(b)} values)")
    low, high, used = bootstrap_ci((a, b), _diff_means, **kwargs)
    return Estimate(float(a.mean() - b.mean()), low, high, f"{used}, two independent samples",
                    Sample("two-sample", a, b))


# --- the verdict ---------------------------------------------------------------------------------------


def _decide(low: float, high: float, threshold: float, direction: str) -> bool | None:
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    if direction == "greater":
        return True if low > threshold else False if high <= threshold else None
    return True if high < threshold else False if low >= threshold else None


@dataclass(frozen=True)
class Verdict:
    """One claim, tested: estimate, interval, seeds, criterion and the decision they give.

    Attributes:
        claim: short identifier, e.g. ``'sec4.3-arc-oscillates'``.
        source: where the claim comes from (:data:`SOURCES`).
        statement: the claim in the source's words (or a close paraphrase).
        quantity: what ``estimate`` measures, e.g. ``'osc_val_acc(arc) - osc_val_acc(composite)'``.
        estimate: the measured value.
        ci_low, ci_high: bootstrap interval (NaN when none could be computed).
        confidence: its level.
        n: units the interval is over; ``unit`` names them (``'seeds'``, ``'sites'``, ``'classes'``...).
        seeds: training seeds the measurements come from.
        threshold, direction: the criterion, ``estimate > threshold`` (``'greater'``) or ``< threshold``
            (``'less'``); it holds when the whole interval is on that side.
        interval_method: how the interval was computed.
        holds: True, False, or None (undecided: the interval straddles the threshold or is missing).
        sample: the measurements behind ``estimate`` (:class:`Sample`), kept for pooling seeds; not a
            column of the table.
    """

    claim: str
    source: str
    statement: str
    quantity: str
    estimate: float
    ci_low: float
    ci_high: float
    n: int
    unit: str
    threshold: float
    direction: str = "greater"
    seeds: tuple[int, ...] = ()
    confidence: float = 0.95
    interval_method: str = ""
    holds: bool | None = field(default=None)
    sample: Sample | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.direction not in ("greater", "less"):
            raise ValueError(f"direction must be 'greater' or 'less', got {self.direction!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "holds", _decide(self.ci_low, self.ci_high, self.threshold, self.direction))

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def criterion(self) -> str:
        return f"{self.quantity} {'>' if self.direction == 'greater' else '<'} {self.threshold:g}"

    @property
    def verdict(self) -> str:
        """``'holds'``, ``'does not hold'`` or ``'undecided'``."""
        return {True: "holds", False: "does not hold", None: "undecided"}[self.holds]

    def interval_text(self) -> str:
        if not (np.isfinite(self.ci_low) and np.isfinite(self.ci_high)):
            return f"no interval ({self.n} {self.unit})"
        how = f", {self.interval_method}" if self.interval_method else ""
        return f"{self.confidence:.0%} CI {self.ci_low:+.4g} to {self.ci_high:+.4g} over {self.n} {self.unit}{how}"

    def sentence(self) -> str:
        """The verdict in one sentence, built from the numbers."""
        seeds = f"seed{'s' if self.n_seeds != 1 else ''} {', '.join(map(str, self.seeds))}" if self.seeds else "seeds not given"
        side = "above" if self.direction == "greater" else "below"
        if self.holds is True:
            why = f"the whole interval lies {side} {self.threshold:g}"
        elif self.holds is False:
            why = f"the whole interval lies {'at or below' if self.direction == 'greater' else 'at or above'} {self.threshold:g}"
        elif np.isfinite(self.ci_low) and np.isfinite(self.ci_high):
            why = f"the interval straddles {self.threshold:g}"
        else:
            why = "no interval could be computed"
        return (f"{self.source} ({self.claim}): \"{self.statement}\" {self.quantity} = {self.estimate:+.4g} "
                f"({self.interval_text()}; {seeds}). Criterion {self.criterion}: {self.verdict} here, as {why}.")

    def as_row(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sample"}
        row.update(n_seeds=self.n_seeds, seeds=" ".join(map(str, self.seeds)), criterion=self.criterion,
                   verdict=self.verdict, sentence=self.sentence())
        return row


def make_verdict(claim: str, source: str, statement: str, quantity: str, estimate_ci: tuple[float, float, float, str],
                 *, n: int, unit: str, threshold: float, direction: str = "greater", seeds: Iterable[int] = (),
                 confidence: float = 0.95) -> Verdict:
    """A :class:`Verdict` from an ``(estimate, low, high, method)`` tuple of :func:`mean_ci` / :func:`difference_ci`."""
    est, low, high, used = estimate_ci
    return Verdict(claim=claim, source=source, statement=statement, quantity=quantity, estimate=float(est),
                   ci_low=float(low), ci_high=float(high), n=int(n), unit=unit, threshold=float(threshold),
                   direction=direction, seeds=tuple(seeds), confidence=confidence, interval_method=used,
                   sample=getattr(estimate_ci, "sample", None))


# --- constructors, one per claim the notebooks test ----------------------------------------------------


def loss_oscillation_verdict(unstable, stable, *, seeds: Iterable[int] = (), column: str = "osc_val_acc",
                             unit: str = "seeds", paired: bool = False, groups=None, **ci) -> Verdict:
    """Section 4.3: arc-margin alone oscillates more than the composite loss.

    Args:
        unstable, stable: the oscillation (e.g. :func:`rxlib.train.evaluate.oscillation`) of the
            arc-margin and composite runs, one value per seed; or, for one seed, per-step values
            (``|diff|`` of the curve per epoch, ``unit='epoch steps'``; consecutive steps are not
            independent, so that interval is optimistic; say so by the unit).
        paired: True when the runs of both losses share seeds in the same order.
    """
    a, b = _finite(unstable, "unstable"), _finite(stable, "stable")
    if len(a) == 0 or len(b) == 0:  # runs of one epoch (paper-mini) have no epoch step to compare
        estimate = (float("nan"), float("nan"), float("nan"), "none: a run of one epoch has no epoch step")
    else:
        estimate = difference_ci(a, b, paired=paired, groups=groups, **ci)
    return make_verdict(f"sec4.3-arc-oscillates-{column}", "paper",
                        "Training with the arc-margin loss alone oscillated; the composite loss is stable.",
                        f"{column}(arc) - {column}(composite)", estimate,
                        n=len(a) if paired else min(len(a), len(b)), unit=unit, threshold=0.0, seeds=seeds)


#: The with/without pseudo-label claims of Figures 7-9: claim id -> (figure statement, quantity).
PL_CLAIMS = {
    "fig7-arc-spread": ("Figure 7: with pseudo-labels the arc-margin templates are more spread apart.", "template spread (arc)"),
    "fig7-arc-junk": ("Figure 7: with pseudo-labels the junk classes form a separate cluster of arc-margin templates.",
                      "junk silhouette (arc)"),
    "fig8-softmax-spread": ("Figure 8: with pseudo-labels the softmax templates are more spread apart.",
                            "template spread (softmax)"),
    "fig8-softmax-junk": ("Figure 8: with pseudo-labels the junk classes separate from the actual classes.",
                          "junk silhouette (softmax)"),
    "fig9-feature-separation": ("Figure 9: with pseudo-labels the feature vectors of the most frequent classes are "
                                "better clustered.", "feature silhouette"),
}


def pseudo_label_verdict(claim: str, without_pl, with_pl, *, unit: str, seeds: Iterable[int] = (),
                         paired: bool = True, margin: float = 0.0, groups=None, **ci) -> Verdict:
    """Figures 7, 8 and 9: a measure grows with pseudo-labels.

    Args:
        claim: a key of :data:`PL_CLAIMS`.
        without_pl, with_pl: the measure per unit (per seed; or for one seed per class: see
            :func:`~rxlib.explain.embeddings.template_spread_per_class`, or per template / site:
            :func:`silhouette_per_item`).
        paired: the same units in the same order in both (classes, sites, seeds).
        margin: the smallest increase counted.
    """
    if claim not in PL_CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; known: {sorted(PL_CLAIMS)}")
    statement, quantity = PL_CLAIMS[claim]
    a, b = _finite(with_pl, "with_pl"), _finite(without_pl, "without_pl")
    return make_verdict(claim, "paper", statement, f"{quantity}: with PL - without PL",
                        difference_ci(a, b, paired=paired, groups=groups, **ci),
                        n=len(a) if paired else min(len(a), len(b)), unit=unit, threshold=margin, seeds=seeds)


def filter_bands_verdict(layer: str, trained, initial, *, measure: str = "band", unit: str = "filters",
                         seeds: Iterable[int] = (), margin: float = 0.05, paired: bool = False, **ci) -> Verdict:
    """Figure 10 (section 4.6): the trained 1x1 filters show more bands (or redundant filters) than at
    initialisation.

    Args:
        layer: e.g. ``'DB(1),DL(6)'``.
        trained, initial: per filter 0/1 flags (:func:`~rxlib.explain.filters.filter_unit_flags`), two independent samples;
            or per seed fractions with ``paired=True`` and ``unit='seeds'``.
        measure: ``'band'`` (band filters) or ``'has_duplicate'`` (filters with a near-duplicate).
        margin: the smallest increase counted (the notebook's 5 points).
    """
    what = {"band": "share of band filters", "has_duplicate": "share of filters with a near-duplicate"}[measure]
    a, b = _finite(trained, "trained"), _finite(initial, "initial")
    return make_verdict(f"fig10-{measure}-{layer}", "paper",
                        "Figure 10: the 1x1 filters of these dense layers form vertical bands repeated into blocks.",
                        f"{what} in {layer}: trained - initialisation",
                        difference_ci(a, b, paired=paired, **ci), n=min(len(a), len(b)), unit=unit,
                        threshold=margin, seeds=seeds)


def cheating_verdict(clean, cheating, *, sites: str = "cue", seeds: Iterable[int] = (), margin: float = 0.0,
                     groups=None, **ci) -> Verdict:
    """Grad-CAMO's warning: a model that learnt a background cue puts less attention on the cells.

    Args:
        clean, cheating: Grad-CAMO per site of the two models on the same sites, same order (paired).
        sites: which sites (``'cue'`` or ``'held-out'``), part of the claim id.
        groups: optional group per site (e.g. experiment) for a cluster bootstrap.
    """
    a, b = _finite(clean, "clean"), _finite(cheating, "cheating")
    return make_verdict(f"gradcamo-cheating-{sites}", "Grad-CAMO",
                        "A model that exploits a spurious background cue scores a lower Grad-CAMO than a clean model.",
                        f"Grad-CAMO clean - cheating ({sites} sites)",
                        difference_ci(a, b, paired=True, groups=groups, **ci), n=len(a), unit=f"{sites} sites",
                        threshold=margin, seeds=seeds)


def grad_camo_area_verdict(grad_camo, cell_fraction, *, seeds: Iterable[int] = (), groups=None, **ci) -> Verdict:
    """The clean model looks at the cells more than a uniform map: Grad-CAMO above the cell-area fraction.

    Args:
        grad_camo, cell_fraction: per site (columns of :func:`rxlib.explain.grad_camo_dataset`).
        groups: optional group per site (e.g. experiment) for a cluster bootstrap.
    """
    a, b = _finite(grad_camo, "grad_camo"), _finite(cell_fraction, "cell_fraction")
    return make_verdict("gradcamo-above-area", "Grad-CAMO",
                        "A model that learnt the phenotype puts more attention on the cells than their share of the image.",
                        "Grad-CAMO - cell-area fraction", difference_ci(a, b, paired=True, groups=groups, **ci),
                        n=len(a), unit="sites", threshold=0.0, seeds=seeds)


#: Statements of :func:`localisation_verdicts` per planted mask.
LOCALISATION_STATEMENTS = {
    "cells": ("Grad-CAMO", "Attention lies on the cells rather than the background."),
    "phenotype": ("paper", "Grad-CAM shows where in the cells a perturbation acts."),
}


def localisation_verdicts(frame: pd.DataFrame, *, seeds: Iterable[int] = (), **ci) -> list[Verdict]:
    """Per planted mask and localisation metric (:func:`rxlib.explain.localisation.gradcam_localisation`
    rows): the metric beats its chance level, the mask's share of the image (paired over sites with a
    non-empty mask)."""
    out = []
    for kind, part in frame.groupby("mask", sort=False):
        source, statement = LOCALISATION_STATEMENTS.get(kind, ("Grad-CAMO", f"Attention lies on the {kind} mask."))
        for metric in ("pointing_game", "relevance_mass_accuracy", "relevance_rank_accuracy"):
            rows = part[part[metric].notna()]
            if rows.empty:
                continue
            a, b = _finite(rows[metric], metric), _finite(rows["mask_fraction"], "mask_fraction")
            out.append(make_verdict(f"localisation-{kind}-{metric.replace('_', '-')}", source, statement,
                                    f"{metric} - mask fraction ({kind})", difference_ci(a, b, paired=True, **ci),
                                    n=len(a), unit="sites", threshold=0.0, seeds=seeds))
    return out


def control_check_verdict(negative, positive, *, model: str = "clean", seeds: Iterable[int] = (),
                          unit: str = "sites", paired: bool = False, **ci) -> Verdict:
    """Section 2.2's sanity check: lower top-1 probability on negative than on positive controls.

    Args:
        negative, positive: top-1 probability per negative / positive control site (two independent
            samples), or per seed means with ``paired=True, unit='seeds'``.
    """
    a, b = _finite(negative, "negative"), _finite(positive, "positive")
    return make_verdict(f"sec2.2-controls-{model.replace(' ', '_')}", "paper",
                        "A model that learnt the perturbations is far less sure of negative controls than of positive ones.",
                        f"top-1 probability negative - positive controls ({model})",
                        difference_ci(a, b, paired=paired, **ci), n=min(len(a), len(b)), unit=unit,
                        threshold=0.0, direction="less", seeds=seeds)


def planted_channels_verdicts(method: str, hits, spearman, *, n_channels: int = 6, seeds: Iterable[int] = (),
                              source: str = "paper", **ci) -> tuple[Verdict, Verdict]:
    """Eq. 15 (or DCMIX, ``source='DCMIX'``) recovers the planted channels: the top-1 hit rate over
    classes above chance ``1 / n_channels``, and the mean Spearman correlation with the planted
    importance above 0. Both intervals are over classes
    (:func:`~rxlib.explain.channels.per_class_recovery`).

    Args:
        method: the method's name (as in the method table).
        hits: per class 1 when its top channel is the planted top channel, else 0.
        spearman: per class rank correlation with the planted importance (NaN classes are dropped).
    """
    hits = _finite(hits, "hits")
    rho = np.asarray(spearman, dtype=np.float64)
    rho = rho[np.isfinite(rho)]
    statement = {"paper": "Eq. 15's channel attention says which channel drives the prediction.",
                 "DCMIX": "DCMIX's learnt mixing weights are the channel importance."}.get(
        source, "The method recovers the planted channel importance.")
    slug = method.replace(" ", "_")
    top1 = make_verdict(f"channels-top1-{slug}", source, statement, f"top-1 hit rate of {method}",
                        mean_ci(hits, bounds=(0.0, 1.0), **ci), n=len(hits), unit="classes", threshold=1.0 / n_channels,
                        seeds=seeds)
    if len(rho) == 0:
        rank_est = (float("nan"), float("nan"), float("nan"), "none")
    else:
        rank_est = mean_ci(rho, bounds=(-1.0, 1.0), **ci)
    rank = make_verdict(f"channels-spearman-{slug}", source, statement, f"mean Spearman of {method} with the planted importance",
                        rank_est, n=len(rho), unit="classes", threshold=0.0, seeds=seeds)
    return top1, rank


def randomisation_verdict(method: str, similarity, *, test: str = "model parameters", threshold: float = 0.5,
                          measure: str = "Spearman", seeds: Iterable[int] = (), unit: str = "images", **ci) -> Verdict:
    """Adebayo et al. (2018): an explanation that depends on the model changes when the model is
    randomised. It passes when the similarity of its maps before and after is below ``threshold``
    (see :mod:`rxlib.explain.sanity` for why 0.5).

    Args:
        method: the explanation method.
        similarity: per image similarity (e.g. Spearman) between the explanations of the trained and
            the randomised (or label-shuffled) model.
        test: ``'model parameters'`` (cascading randomisation, fully randomised) or ``'labels'``.
    """
    values = _finite(similarity, "similarity")
    slug = method.replace(" ", "_")
    return make_verdict(f"sanity-{test.replace(' ', '-')}-{slug}", "Adebayo et al. 2018",
                        f"An explanation that depends on the model changes when the {test} are randomised.",
                        f"{measure} of {method} before vs after randomising the {test}",
                        # Spearman and SSIM both lie in [-1, 1]
                        mean_ci(values, bounds=(-1.0, 1.0), **ci), n=len(values), unit=unit, threshold=threshold,
                        direction="less", seeds=seeds)


# --- unit helpers -----------------------------------------------------------------------------------


def silhouette_per_item(vectors: np.ndarray, labels, metric: str = "cosine") -> np.ndarray:
    """Silhouette of each vector (``sklearn.metrics.silhouette_samples``); their mean is the silhouette
    score of :func:`~rxlib.explain.embeddings.feature_separation` and
    :func:`~rxlib.explain.embeddings.junk_separation` (labels = junk flags)."""
    from sklearn.metrics import silhouette_samples

    return silhouette_samples(np.asarray(vectors, dtype=np.float64), np.asarray(labels), metric=metric)


# --- from the notebooks' objects ------------------------------------------------------------------------


def run_seeds(*runs) -> tuple[int, ...]:
    """The training seeds of registry runs (:class:`~rxlib.train.registry.TrainedModel`), sorted, unique;
    a dict of runs (``ctx.models("05")``) counts as its values."""
    flat = [r for run in runs for r in (run.values() if isinstance(run, dict) else [run])]
    return tuple(sorted({int(r.config.train.get("seed", 0)) for r in flat}))


def oscillation_steps(history: pd.DataFrame, column: str, *, relative: bool = False) -> np.ndarray:
    """``|diff|`` of a training curve per epoch step (their mean is
    :func:`rxlib.train.evaluate.oscillation`); with ``relative``, divided by the curve's mean."""
    values = history[column].to_numpy(dtype=float)
    steps = np.abs(np.diff(values))
    return steps / float(np.mean(values)) if relative else steps


def loss_verdicts(results: dict, *, unstable: str = "arc", stable: str = "composite", **ci) -> list[Verdict]:
    """Section 4.3 from notebook 03's runs (``{loss: TrainedModel}``, one run per loss): the held-out
    accuracy of the trained head (``osc_val_acc``) and its held-out loss relative to its mean
    (``osc_val_loss_rel``), compared by their per-epoch steps (units: epoch steps of one seed per
    loss; with several seeds, pass per-seed oscillations to :func:`loss_oscillation_verdict`)."""
    from rxlib.train.evaluate import trained_head

    out = []
    for column, (kind, relative) in {"osc_val_acc": ("acc", False), "osc_val_loss_rel": ("loss", True)}.items():
        a, b = (oscillation_steps(results[name].history, f"val_{kind}_{trained_head(results[name].config.train['loss'])}",
                                  relative=relative) for name in (unstable, stable))
        out.append(loss_oscillation_verdict(a, b, seeds=run_seeds(results[unstable], results[stable]), column=column,
                                            unit="epoch steps", **ci))
    return out


def pseudo_label_verdicts(models: dict, junk: np.ndarray, features: dict | None = None, *,
                          without: str = "without PL", with_: str = "with PL", seeds: Iterable[int] = (),
                          **ci) -> list[Verdict]:
    """Figures 7-9 from notebook 05's objects: template spread (per actual class, paired) and junk
    silhouette (per template, paired) of both heads, and feature silhouette (per site; paired when both
    models' features are of the same sites in the same order).

    Args:
        models: ``{'without PL': RxNet, 'with PL': RxNet}``.
        junk: junk flag per class (:func:`rxlib.explain.embeddings.junk_classes`).
        features: ``{name: (features, labels)}`` (:func:`rxlib.explain.embeddings.features_of`).
    """
    from rxlib.explain.embeddings import template_matrix, template_spread_per_class

    junk = np.asarray(junk, dtype=bool)
    out = []
    for head, figure in (("arc", "fig7-arc"), ("softmax", "fig8-softmax")):
        t0, t1 = template_matrix(models[without], head), template_matrix(models[with_], head)
        out.append(pseudo_label_verdict(f"{figure}-spread", template_spread_per_class(t0, ~junk),
                                        template_spread_per_class(t1, ~junk), unit="classes", seeds=seeds, **ci))
        if 0 < junk.sum() < len(junk):
            out.append(pseudo_label_verdict(f"{figure}-junk", silhouette_per_item(t0, junk), silhouette_per_item(t1, junk),
                                            unit="templates", seeds=seeds, **ci))
    if features is not None:
        (x0, y0), (x1, y1) = features[without], features[with_]
        paired = len(y0) == len(y1) and np.array_equal(np.asarray(y0), np.asarray(y1))
        out.append(pseudo_label_verdict("fig9-feature-separation", silhouette_per_item(x0, y0), silhouette_per_item(x1, y1),
                                        unit="sites", paired=paired, seeds=seeds, **ci))
    return out


#: Section 4.4's generalisation claims, tested by notebook 04's ablation: run label -> statement.
ABLATION_CLAIMS = {
    "+CutMix": "CutMix helps the model generalise better (section 4.4).",
    "+pseudo-labels": "Pseudo-labelling helps the model generalise on the validation set (section 4.4, Figure 6).",
    "+CutMix +pseudo-labels": "Pseudo-labels and CutMix together (PL+CM+CD) make the model generalise better than "
                              "the baseline (sections 3.3-3.4, Figure 6).",
}


def ablation_verdicts(runs: dict, *, baseline: str = "baseline", group: str | None = "experiment",
                      **ci) -> list[Verdict]:
    """Notebook 04's ablation: each run's held-out accuracy (softmax head) against ``baseline``'s, paired
    over the held-out sites both were scored on (:func:`rxlib.train.evaluate.correct_per_site`),
    sites resampled by ``group`` (experiment: sites of one experiment share its batch effect). With
    pseudo-labels the held-out images were seen unlabelled in training: a transductive score.

    Args:
        runs: ``{label: TrainedModel}`` (``ctx.models("04")``); labels of :data:`ABLATION_CLAIMS` get
            the paper's statement.
    """
    from rxlib.train.evaluate import correct_per_site

    base = correct_per_site(runs[baseline].predictions)
    out = []
    for label, run in runs.items():
        if label == baseline:
            continue
        both = base.join(correct_per_site(run.predictions)["correct"].rename("other"), how="inner")
        out.append(make_verdict(f"sec4.4-generalises-{label.strip('+').replace(' +', '-').replace(' ', '_')}", "paper",
                                ABLATION_CLAIMS.get(label, f"{label} generalises better than {baseline}."),
                                f"held-out accuracy (softmax head): {label} - {baseline}",
                                difference_ci(both["other"], both["correct"], paired=True,
                                              groups=both[group].to_numpy() if group else None, **ci),
                                n=len(both), unit="held-out sites", threshold=0.0, seeds=run_seeds(runs[baseline], run)))
    return out


def filter_verdicts(trained, initial, layers, *, seeds: Iterable[int] = (), margin: float = 0.05, **ci) -> list[Verdict]:
    """Figure 10 from notebook 06's models: per layer, the share of band filters and of filters with a
    near-duplicate, trained against initialisation (per filter, two independent samples)."""
    from rxlib.explain.filters import figure10_weights, filter_unit_flags

    w_trained, w_initial = figure10_weights(trained, layers), figure10_weights(initial, layers)
    out = []
    for layer in w_trained:
        ft, fi = filter_unit_flags(w_trained[layer]), filter_unit_flags(w_initial[layer])
        for measure in ("band", "has_duplicate"):
            out.append(filter_bands_verdict(layer, ft[measure], fi[measure], measure=measure, seeds=seeds,
                                            margin=margin, **ci))
    return out


def grad_camo_verdicts(clean_scores: pd.DataFrame | None = None, cheat_scores: pd.DataFrame | None = None, *,
                       seeds: Iterable[int] = (), group: str | None = "experiment", **ci) -> list[Verdict]:
    """Notebook 07's Grad-CAMO claims: the clean model's Grad-CAMO above the cell-area fraction (per
    held-out site of ``clean_scores``, :func:`rxlib.explain.grad_camo_dataset`), and clean above
    cheating on the cue sites and on the held-out sites (per site, paired; ``cheat_scores`` is the
    per-image frame of :func:`rxlib.explain.cheating.cheating_measurements`). Sites are resampled by
    ``group`` (experiment: sites of one experiment share its batch effect)."""
    out = []
    if clean_scores is not None:
        frame = clean_scores.dropna(subset=["grad_camo", "cell_fraction"])
        out.append(grad_camo_area_verdict(frame["grad_camo"], frame["cell_fraction"], seeds=seeds,
                                          groups=frame[group] if group else None, **ci))
    if cheat_scores is not None:
        for sites in ("cue", "held-out"):
            part = cheat_scores[cheat_scores["sites"] == sites]
            if part.empty:
                continue
            wide = part.pivot_table(index="site_id", columns="model", values="grad_camo").dropna()
            groups = None
            if group:
                groups = part.drop_duplicates("site_id").set_index("site_id").loc[wide.index, group].to_numpy()
            out.append(cheating_verdict(wide["clean"], wide["cheating"], sites=sites, seeds=seeds, groups=groups, **ci))
    return out


def control_verdicts(runs: dict, **ci) -> list[Verdict]:
    """Section 2.2's control check for each run (``{name: TrainedModel}``): top-1 probability of the
    held-out negative against positive control sites (two independent samples)."""
    out = []
    for name, run in runs.items():
        pred = run.predictions
        neg = pred.loc[pred["well_type"] == "negative_control", "top1_prob"]
        pos = pred.loc[pred["well_type"] == "positive_control", "top1_prob"]
        out.append(control_check_verdict(neg, pos, model=name, seeds=run_seeds(run), **ci))
    return out


def channel_verdicts(importances: dict, labels, planted: pd.DataFrame, *, methods: Iterable[str] | None = None,
                     seeds: Iterable[int] = (), **ci) -> list[Verdict]:
    """Notebook 08: does each eq. 15 method (source: the paper) and DCMIX (any method whose name holds
    ``DCMIX``) recover the planted channels? Two verdicts per method (top-1 over chance, Spearman over
    0), intervals over classes (:func:`~rxlib.explain.channels.per_class_recovery`).

    Args:
        importances: method -> per-image ``(N, C)`` or per-class DataFrame (the notebook's dict).
        labels: class per image.
        planted: :func:`rxlib.explain.channels.planted_importance`; None (no truth) gives no verdicts.
        methods: which methods (default: the eq. 15 and DCMIX ones).
    """
    from rxlib.explain.channels import per_class_recovery

    if planted is None:  # no planted channels (real data): nothing to score
        return []
    chosen = [m for m in importances if m.startswith("eq15") or "DCMIX" in m] if methods is None else list(methods)
    out = []
    for method in chosen:
        rec = per_class_recovery(importances[method], labels, planted)
        out += planted_channels_verdicts(method, rec["hit"], rec["spearman"], n_channels=planted.shape[1], seeds=seeds,
                                         source="DCMIX" if "DCMIX" in method else "paper", **ci)
    return out


# --- tables, files, captions ---------------------------------------------------------------------------


#: The columns :func:`verdicts_table` keeps with ``brief=True`` (for display in a notebook).
BRIEF_COLUMNS = ("claim", "statement", "estimate", "ci_low", "ci_high", "n", "unit", "n_seeds", "criterion", "verdict")


def verdicts_table(verdicts: Iterable[Verdict], *, brief: bool = False) -> pd.DataFrame:
    """One row per verdict: the paper's statement, our estimate, CI, seeds and holds / does not hold /
    undecided (columns :data:`VERDICT_COLUMNS` less ``notebook``; :data:`BRIEF_COLUMNS` with ``brief``)."""
    rows = [v.as_row() for v in verdicts]
    frame = pd.DataFrame(rows, columns=[c for c in VERDICT_COLUMNS if c != "notebook"])
    return frame[list(BRIEF_COLUMNS)] if brief else frame


def default_verdicts_path() -> Path:
    """``reports/verdicts.csv`` (moved by ``RXLIB_REPORTS``)."""
    from rxlib import config

    return config.reports_dir() / "verdicts.csv"


def write_verdicts(verdicts: Iterable[Verdict], path: str | Path | None = None, *, notebook: str,
                   timeout: float = 60.0) -> pd.DataFrame:
    """Merge a notebook's verdicts into the shared table: its old rows are replaced, other notebooks'
    rows are kept; the file is rewritten atomically (:func:`rxlib.io.write_csv`) under a lock, so
    notebooks run side by side do not lose each other's rows. In a folder claimed by an rxlib command
    (one holding :data:`rxlib.outputs.RECORD_NAME`) the CSV and its lock are added to the record first,
    so that ``--overwrite`` removes them and they never count as foreign files.

    Args:
        verdicts: this notebook's verdicts (all of them: rows of an earlier run are dropped).
        path: the CSV (default :func:`default_verdicts_path`).
        notebook: the notebook's name, e.g. ``'07_gradcam'``.
        timeout: seconds to wait for another writer.

    Returns:
        The whole merged table.

    Raises:
        ValueError: an existing file without the expected columns (names the file), or an empty name.
    """
    from filelock import FileLock

    from rxlib.io import write_csv
    from rxlib.outputs import RECORD_NAME, record_written

    if not notebook:
        raise ValueError("notebook must name the notebook whose rows these are")
    path = Path(path) if path is not None else default_verdicts_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    new = verdicts_table(verdicts)
    new.insert(0, "notebook", notebook)
    if new["claim"].duplicated().any():
        raise ValueError(f"duplicate claims in one notebook: {sorted(new.loc[new['claim'].duplicated(), 'claim'])}")
    lock = Path(str(path) + ".lock")
    if (path.parent / RECORD_NAME).is_file():  # a folder claimed by an rxlib command: list what we leave there
        record_written(path.parent, [path, lock])
    with FileLock(str(lock), timeout=timeout):
        if path.is_file():
            old = pd.read_csv(path, dtype={"seeds": str})
            missing = set(VERDICT_COLUMNS) - set(old.columns)
            if missing:
                raise ValueError(f"{path} is not a verdicts table: missing columns {sorted(missing)}")
            old = old[old["notebook"] != notebook]
        else:
            old = pd.DataFrame(columns=list(VERDICT_COLUMNS))
        frames = [f for f in (old[list(VERDICT_COLUMNS)], new[list(VERDICT_COLUMNS)]) if len(f)]
        merged = pd.concat(frames, ignore_index=True) if frames else new[list(VERDICT_COLUMNS)]
        merged = merged.sort_values(["notebook", "claim"], kind="stable").reset_index(drop=True)
        write_csv(path, merged)
    return merged


def caption(verdict: Verdict) -> str:
    """Text for a figure caption quoting the verdict, e.g. ``'Verdict: ... holds here (95% CI ...)'``."""
    return f"Verdict: {verdict.sentence()}"

