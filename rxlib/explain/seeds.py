"""Verdicts over several seeds: each seed's measurements, saved beside its reports, pooled into one verdict.

A run with ``seeds`` > 1 (``rxlib reproduce --seeds 3``) repeats the verdict notebooks once per extra
seed, with the data set and the training both re-drawn (the synthetic set of that seed, and
``train.seed`` the main seed's plus 1, 2, ...; on real data only the training). Each notebook keeps the
measurements behind its verdicts (:class:`rxlib.explain.verdicts.Sample`) in
``verdict_samples/<notebook>.json`` of its reports folder
(:func:`write_samples`); the main seed's notebook reads those of the other seeds (:func:`seed_reports_dir`)
and pools them (:func:`pool_verdicts`).

Pooling is a two-level bootstrap (:func:`two_level_ci`): each resample draws the seeds with replacement,
then the units (sites, classes, filters; whole clusters where the verdict had groups) within each drawn
seed, and recomputes the pooled statistic. Seed-to-seed variation so widens the interval, which a
bootstrap over the pooled units alone would hide. With only three seeds a bootstrap over seeds covers
less than it says where seeds differ more than units do (a simulation of 3 seeds x 40 units covered 72 %
at a nominal 95 %), so the pooled interval is widened to the Student-t interval of the per-seed
estimates (k - 1 degrees of freedom, :func:`seed_t_interval`) wherever that one is wider.

A two-sample claim (``mean(a) - mean(b)``) is pooled as a weighted mean of the per-seed differences
(weights ``1 / (1/n_a + 1/n_b)``), never as the difference of means pooled over seeds: seeds differ in
level, and a seed with more ``a`` than ``b`` units would otherwise move the estimate (Simpson's paradox).

Each samples file records the run it came from (profile and settings, less ``train.seed``); pooling
refuses a file from another run (:func:`read_samples` with ``expect``).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rxlib.explain.verdicts import Sample, Verdict, _finite

#: Bootstrap resamples of :func:`two_level_ci`.
N_RESAMPLES = 4000

#: Seeds a run pools when none are asked for (:func:`default_seeds`): the smoke run's verdicts rest on three
#: seeds; a paper run on one, since each seed would train every model again on the GPU.
DEFAULT_SEEDS: dict[str, int] = {"smoke": 3}

#: The fields of a :class:`~rxlib.explain.verdicts.Verdict` a samples file keeps (``holds`` is derived).
_FIELDS = tuple(f.name for f in dataclasses.fields(Verdict) if f.name not in ("holds", "sample"))


def default_seeds(profile: str) -> int:
    """The seeds a run of ``profile`` pools unless told otherwise (:data:`DEFAULT_SEEDS`, else 1)."""
    return DEFAULT_SEEDS.get(profile, 1)


def seed_list(seed: int, seeds: int) -> list[int]:
    """The seeds of a run: ``seed`` (the one its figures show) and the ``seeds - 1`` after it.

    Raises:
        ValueError: ``seeds`` below 1 (names the value).
    """
    if int(seeds) < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds!r}")
    return [int(seed) + i for i in range(int(seeds))]


def seed_reports_dir(reports_dir: str | Path, seed: int) -> Path:
    """Where the notebooks of an extra seed write their reports: ``<reports_dir>/seeds/seed<seed>``."""
    return Path(reports_dir) / "seeds" / f"seed{int(seed)}"


def samples_path(reports_dir: str | Path, notebook: str) -> Path:
    """``<reports_dir>/verdict_samples/<notebook>.json``."""
    return Path(reports_dir) / "verdict_samples" / f"{notebook}.json"


def _sample_dict(sample: Sample | None) -> dict | None:
    if sample is None:
        return None
    return {"kind": sample.kind, "first": [float(x) for x in sample.first],
            "second": [float(x) for x in sample.second], "groups": list(sample.groups),
            "bounds": None if sample.bounds is None else [float(b) for b in sample.bounds]}


def write_samples(verdicts: Sequence[Verdict], reports_dir: str | Path, notebook: str, *,
                  run: Mapping | None = None) -> Path:
    """Keep a notebook's verdicts with their measurements (atomically, recorded in a claimed folder).

    Args:
        run: what the run was (e.g. profile and settings), checked by :func:`read_samples` before pooling.
    """
    from rxlib.io import write_json
    from rxlib.outputs import RECORD_NAME, record_written

    path = samples_path(reports_dir, notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    if (Path(reports_dir) / RECORD_NAME).is_file():
        record_written(Path(reports_dir), [path])
    rows = [{**{k: getattr(v, k) for k in _FIELDS}, "seeds": list(v.seeds), "sample": _sample_dict(v.sample)}
            for v in verdicts]
    return write_json(path, {"notebook": notebook, "run": dict(run or {}), "verdicts": rows})


def _read_sample(raw) -> Sample | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("kind") not in ("mean", "two-sample"):
        raise ValueError("a sample is not a {'kind': 'mean' or 'two-sample', ...} object")
    first = _finite(raw["first"], "first")
    second = _finite(raw["second"], "second")
    groups = raw["groups"]
    if not isinstance(groups, list) or len(groups) not in (0, len(first)):
        raise ValueError(f"groups must be a list of {len(first)} labels or empty")
    bounds = raw.get("bounds")  # absent in files written before samples kept their bounds
    if bounds is not None and (not isinstance(bounds, list) or len(bounds) != 2):
        raise ValueError(f"bounds must be a list of two numbers, got {bounds!r}")
    return Sample(raw["kind"], first, second, tuple(str(g) for g in groups),
                  None if bounds is None else (float(bounds[0]), float(bounds[1])))


def read_samples(path: str | Path, *, expect: Mapping | None = None) -> list[Verdict]:
    """The verdicts :func:`write_samples` kept.

    Args:
        expect: the run the samples must come from (the ``run`` given to :func:`write_samples`).

    Raises:
        FileNotFoundError: no such file (names it).
        ValueError: a file that is not a verdict-samples file, or one from another run (names the file
            and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no verdict samples at {path}")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("verdicts"), list):
            raise ValueError("no list of verdicts")
        out = []
        for row in data["verdicts"]:
            if not isinstance(row, dict):
                raise ValueError("a verdict is not an object")
            values = {k: row[k] for k in _FIELDS}
            if not isinstance(values["estimate"], (int, float)) or not isinstance(values["n"], int):
                raise ValueError(f"verdict {values['claim']!r} has no numeric estimate and n")
            out.append(Verdict(**values, sample=_read_sample(row.get("sample"))))
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a verdict-samples file: {exc}") from None
    if expect is not None:
        found = data["run"] if isinstance(data.get("run"), dict) else {}
        differ = sorted(k for k in set(expect) | set(found) if expect.get(k) != found.get(k))
        if differ:
            what = ", ".join(f"{k}: {found.get(k)!r} here, {expect.get(k)!r} wanted" for k in differ)
            raise ValueError(f"{path} comes from another run ({what}); rerun rxlib reproduce with --seeds to "
                             "replace it")
    return out


def _clusters(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster the sum and the count of a ``'mean'`` sample's values (each value alone without groups)."""
    values = np.asarray(sample.first, float)
    if not sample.groups:
        return values, np.ones_like(values)
    groups = np.asarray(sample.groups)
    names, index = np.unique(groups, return_inverse=True)
    return np.bincount(index, values, len(names)), np.bincount(index, None, len(names)).astype(float)


def _resampled_sums(sums: np.ndarray, counts: np.ndarray, rng: np.random.Generator, n: int):
    """``n`` within-seed resamples of clusters: their summed values and counts, each ``(n,)``."""
    pick = rng.integers(0, len(sums), size=(n, len(sums)))
    return sums[pick].sum(axis=1), counts[pick].sum(axis=1)


def _seed_estimate(sample: Sample) -> tuple[float, float]:
    """One seed's statistic and its weight: the mean (weight: its number of values) or the difference
    of means (weight ``1 / (1/n_a + 1/n_b)``)."""
    a = np.asarray(sample.first, float)
    if sample.kind == "mean":
        return float(a.mean()), float(len(a))
    b = np.asarray(sample.second, float)
    return float(a.mean() - b.mean()), 1.0 / (1.0 / len(a) + 1.0 / len(b))


def _check_samples(samples: Sequence[Sample]) -> str:
    if not samples:
        raise ValueError("no samples to pool")
    kinds = {s.kind for s in samples}
    if len(kinds) != 1 or kinds - {"mean", "two-sample"}:
        raise ValueError(f"samples to pool must share one kind, 'mean' or 'two-sample'; got {sorted(kinds)}")
    for s in samples:
        first = _finite(s.first, "a seed's sample")
        second = _finite(s.second, "a seed's second sample")
        if len(first) == 0 or (s.kind == "two-sample" and len(second) == 0):
            raise ValueError("a seed's sample is empty")
    if len({bool(s.groups) for s in samples}) > 1:
        raise ValueError("some seeds' samples are grouped and others not")
    return kinds.pop()


def two_level_ci(samples: Sequence[Sample], *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 random_state: int = 0) -> tuple[float, float, float]:
    """The pooled statistic of several seeds' samples and its two-level percentile bootstrap interval.

    The statistic is the pooled mean (``'mean'``: all values of all seeds, clusters weighted by their
    size) or the weighted mean of the per-seed differences of means (``'two-sample'``, weights
    ``1 / (1/n_a + 1/n_b)``). Each resample draws as many seeds as there are, with replacement, and
    resamples the units (clusters) of each drawn seed afresh.

    Returns:
        ``(estimate, low, high)``.

    Raises:
        ValueError: no samples, samples of different kinds, an empty sample, or a non-finite value.
    """
    kind = _check_samples(samples)
    rng = np.random.default_rng(random_state)
    k = len(samples)
    chosen = rng.integers(0, k, size=(n_resamples, k))  # the seeds of each resample
    numerator, denominator = np.zeros(n_resamples), np.zeros(n_resamples)
    if kind == "mean":
        clusters = [_clusters(s) for s in samples]
        estimate = sum(c[0].sum() for c in clusters) / sum(c[1].sum() for c in clusters)
        for slot in range(k):
            for seed_index, (sums, counts) in enumerate(clusters):
                rows = np.flatnonzero(chosen[:, slot] == seed_index)
                total, count = _resampled_sums(sums, counts, rng, len(rows))
                numerator[rows] += total
                denominator[rows] += count
    else:
        found = [_seed_estimate(s) for s in samples]
        estimate = sum(d * w for d, w in found) / sum(w for _, w in found)
        for slot in range(k):
            for seed_index, sample in enumerate(samples):
                rows = np.flatnonzero(chosen[:, slot] == seed_index)
                a, b = np.asarray(sample.first, float), np.asarray(sample.second, float)
                sum_a, _ = _resampled_sums(a, np.ones_like(a), rng, len(rows))
                sum_b, _ = _resampled_sums(b, np.ones_like(b), rng, len(rows))
                weight = found[seed_index][1]
                numerator[rows] += weight * (sum_a / len(a) - sum_b / len(b))
                denominator[rows] += weight
    tail = (1 - confidence) / 2
    low, high = np.quantile(numerator / denominator, [tail, 1 - tail])
    return float(estimate), float(low), float(high)


def seed_t_interval(samples: Sequence[Sample], *, confidence: float = 0.95) -> tuple[float, float]:
    """The Student-t interval of the per-seed estimates (k - 1 degrees of freedom; each seed's estimate
    already carries its own sampling noise); ``(nan, nan)`` for fewer than two seeds."""
    from scipy.stats import t

    estimates = np.array([_seed_estimate(s)[0] for s in samples])
    if len(estimates) < 2:
        return float("nan"), float("nan")
    centre = estimates.mean()
    half = t.ppf(0.5 + confidence / 2, len(estimates) - 1) * estimates.std(ddof=1) / np.sqrt(len(estimates))
    return float(centre - half), float(centre + half)


def attainable_range(samples: Sequence[Sample]) -> tuple[float, float]:
    """The values the pooled statistic can take, as its measurements declare them (:class:`Sample` ``bounds``:
    a rate of hits in [0, 1], a mean correlation in [-1, 1]); ``(-inf, inf)`` where they declare none or
    disagree. The Student-t widening of :func:`seed_t_interval` is clipped to it (a top-1 rate of 0.93 over
    three seeds gave an interval up to 1.006)."""
    bounds = {s.bounds for s in samples}
    if len(bounds) == 1 and None not in bounds:
        low, high = bounds.pop()
        return float(low), float(high)
    return -np.inf, np.inf


def _pool_one(claim: str, by_seed: Mapping[int, Verdict]) -> Verdict:
    first = next(iter(by_seed.values()))
    if len(by_seed) == 1:  # made by one seed only: its own verdict
        return first
    common = dict(claim=claim, source=first.source, statement=first.statement, quantity=first.quantity,
                  unit=first.unit, threshold=first.threshold, direction=first.direction, seeds=tuple(sorted(by_seed)),
                  confidence=first.confidence)
    n = sum(v.n for v in by_seed.values())
    missing = sorted(s for s, v in by_seed.items() if v.sample is None)
    samples = [v.sample for v in by_seed.values()]
    try:
        if missing:
            raise ValueError(f"seed {', '.join(map(str, missing))} has no measurements")
        estimate, low, high = two_level_ci(samples, confidence=first.confidence)
    except ValueError as exc:
        return Verdict(**common, estimate=float(np.mean([v.estimate for v in by_seed.values()])),
                       ci_low=float("nan"), ci_high=float("nan"), n=n, interval_method=f"none: {exc}")
    t_low, t_high = seed_t_interval(samples, confidence=first.confidence)
    widened = t_low < low or t_high > high
    units = "clusters" if samples[0].groups else first.unit
    method = (f"two-level percentile bootstrap over {len(by_seed)} seeds, then {units} within each "
              f"({N_RESAMPLES} resamples)")
    if widened:
        method += ", widened to the Student-t interval of the per-seed estimates"
    floor, ceiling = attainable_range(samples)
    ci_low, ci_high = max(min(low, t_low), floor), min(max(high, t_high), ceiling)
    if ci_low > min(low, t_low) or ci_high < max(high, t_high):
        method += " and clipped to the values the statistic can take"
    return Verdict(**common, estimate=estimate, ci_low=ci_low, ci_high=ci_high, n=n, interval_method=method)


def pool_verdicts(by_seed: Mapping[int, Sequence[Verdict]]) -> list[Verdict]:
    """One verdict per claim over every seed that made it (:func:`two_level_ci`, widened to
    :func:`seed_t_interval` where that is wider), in the order of the first seed's claims (then claims
    only later seeds made); a claim one seed alone made comes back as it is. The pooled ``seeds`` are the
    runs' seeds (the keys of ``by_seed``).

    Args:
        by_seed: each seed's verdicts, e.g. ``{0: verdicts, 1: read_samples(...), 2: ...}``.

    Raises:
        ValueError: one seed's verdicts hold a claim twice (names the seed and the claim).
    """
    claims: dict[str, dict[int, Verdict]] = {}
    for seed, verdicts in by_seed.items():
        for verdict in verdicts:
            if int(seed) in claims.get(verdict.claim, {}):
                raise ValueError(f"seed {seed} has the claim {verdict.claim!r} twice")
            claims.setdefault(verdict.claim, {})[int(seed)] = verdict
    return [_pool_one(claim, per_seed) for claim, per_seed in claims.items()]


__all__ = ["DEFAULT_SEEDS", "N_RESAMPLES", "attainable_range", "default_seeds", "pool_verdicts", "read_samples",
           "samples_path", "seed_list", "seed_reports_dir", "seed_t_interval", "two_level_ci", "write_samples"]
