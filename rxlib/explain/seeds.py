"""Verdicts over several seeds: each seed's measurements, saved beside its reports, pooled into one verdict.

A run with ``seeds`` > 1 (``rxlib reproduce --seeds 3``) repeats the verdict notebooks once per extra
seed, with the data set and the training both re-drawn (the synthetic set of that seed, ``train.seed``
set to it; on real data only the training). Each notebook keeps the measurements behind its verdicts
(:class:`rxlib.explain.verdicts.Sample`) in ``verdict_samples/<notebook>.json`` of its reports folder
(:func:`write_samples`); the main seed's notebook reads those of the other seeds (:func:`seed_reports_dir`)
and pools them (:func:`pool_verdicts`).

Pooling is a two-level bootstrap (:func:`two_level_ci`): each resample draws the seeds with replacement,
then the units (sites, classes, filters; whole clusters where the verdict had groups) within each drawn
seed, and recomputes the pooled statistic. Seed-to-seed variation so widens the interval, which a
bootstrap over the pooled units alone would hide. With three seeds the seed level has few distinct
draws, so the interval is a percentile interval, and it is honest rather than tight.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rxlib.explain.verdicts import Sample, Verdict

#: Bootstrap resamples of :func:`two_level_ci`.
N_RESAMPLES = 4000

_FIELDS = ("claim", "source", "statement", "quantity", "estimate", "ci_low", "ci_high", "n", "unit", "threshold",
           "direction", "seeds", "confidence", "interval_method")


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
            "second": [float(x) for x in sample.second], "groups": list(sample.groups)}


def write_samples(verdicts: Sequence[Verdict], reports_dir: str | Path, notebook: str) -> Path:
    """Keep a notebook's verdicts with their measurements (atomically, recorded in a claimed folder)."""
    from rxlib.io import write_json
    from rxlib.outputs import RECORD_NAME, record_written

    path = samples_path(reports_dir, notebook)
    path.parent.mkdir(parents=True, exist_ok=True)
    if (Path(reports_dir) / RECORD_NAME).is_file():
        record_written(Path(reports_dir), [path])
    rows = [{**{k: getattr(v, k) for k in _FIELDS}, "seeds": list(v.seeds), "sample": _sample_dict(v.sample)}
            for v in verdicts]
    return write_json(path, {"notebook": notebook, "verdicts": rows})


def read_samples(path: str | Path) -> list[Verdict]:
    """The verdicts :func:`write_samples` kept.

    Raises:
        FileNotFoundError: no such file (names it).
        ValueError: a file that is not a verdict-samples file (names it and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no verdict samples at {path}")
    try:
        rows = json.loads(path.read_text())["verdicts"]
        out = []
        for row in rows:
            sample = row.pop("sample")
            if sample is not None:
                sample = Sample(sample["kind"], np.asarray(sample["first"], float),
                                np.asarray(sample["second"], float), tuple(sample["groups"]))
            out.append(Verdict(**{k: row[k] for k in _FIELDS}, sample=sample))
        return out
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a verdict-samples file: {exc}") from None


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


def two_level_ci(samples: Sequence[Sample], *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES,
                 random_state: int = 0) -> tuple[float, float, float]:
    """The pooled statistic of several seeds' samples and its two-level percentile bootstrap interval.

    The statistic is the pooled mean (``'mean'``: all values of all seeds, clusters weighted by their
    size) or the pooled difference of means (``'two-sample'``). Each resample draws as many seeds as
    there are, with replacement, and resamples the units (clusters) of each drawn seed.

    Returns:
        ``(estimate, low, high)``.

    Raises:
        ValueError: no samples, samples of different kinds, or an empty sample.
    """
    if not samples:
        raise ValueError("no samples to pool")
    kinds = {s.kind for s in samples}
    if len(kinds) != 1 or kinds - {"mean", "two-sample"}:
        raise ValueError(f"samples to pool must share one kind, 'mean' or 'two-sample'; got {sorted(kinds)}")
    parts = [(np.asarray(s.first, float), np.asarray(s.second, float)) for s in samples]
    if any(len(a) == 0 for a, _ in parts) or (kinds == {"two-sample"} and any(len(b) == 0 for _, b in parts)):
        raise ValueError("a seed's sample is empty")
    rng = np.random.default_rng(random_state)
    k = len(samples)
    chosen = rng.integers(0, k, size=(n_resamples, k))  # the seeds of each resample
    if kinds == {"mean"}:
        clusters = [_clusters(s) for s in samples]
        estimate = sum(c[0].sum() for c in clusters) / sum(c[1].sum() for c in clusters)
        total, count = np.zeros(n_resamples), np.zeros(n_resamples)
        for slot in range(k):
            for seed_index, (sums, counts) in enumerate(clusters):
                rows = np.flatnonzero(chosen[:, slot] == seed_index)
                s, c = _resampled_sums(sums, counts, rng, len(rows))
                total[rows] += s
                count[rows] += c
        stats = total / count
    else:
        estimate = np.concatenate([a for a, _ in parts]).mean() - np.concatenate([b for _, b in parts]).mean()
        sums = {name: (np.zeros(n_resamples), np.zeros(n_resamples)) for name in ("a", "b")}
        for slot in range(k):
            for seed_index, (a, b) in enumerate(parts):
                rows = np.flatnonzero(chosen[:, slot] == seed_index)
                for name, values in (("a", a), ("b", b)):
                    s, c = _resampled_sums(values, np.ones_like(values), rng, len(rows))
                    sums[name][0][rows] += s
                    sums[name][1][rows] += c
        stats = sums["a"][0] / sums["a"][1] - sums["b"][0] / sums["b"][1]
    tail = (1 - confidence) / 2
    low, high = np.quantile(stats, [tail, 1 - tail])
    return float(estimate), float(low), float(high)


def _pool_one(claim: str, by_seed: Mapping[int, Verdict]) -> Verdict:
    first = next(iter(by_seed.values()))
    seeds = tuple(sorted({s for v in by_seed.values() for s in v.seeds} | set(by_seed)))
    common = dict(claim=claim, source=first.source, statement=first.statement, quantity=first.quantity,
                  unit=first.unit, threshold=first.threshold, direction=first.direction, seeds=seeds,
                  confidence=first.confidence)
    samples = [v.sample for v in by_seed.values()]
    missing = sorted(s for s, v in by_seed.items() if v.sample is None or len(v.sample.first) == 0)
    if missing or len({s.kind for s in samples}) != 1:
        why = (f"none: seed {', '.join(map(str, missing))} has no measurements" if missing
               else "none: the seeds measured this differently")
        return Verdict(**common, estimate=float(np.mean([v.estimate for v in by_seed.values()])),
                       ci_low=float("nan"), ci_high=float("nan"), n=sum(v.n for v in by_seed.values()),
                       interval_method=why)
    estimate, low, high = two_level_ci(samples, confidence=first.confidence)
    pooled = Sample(samples[0].kind, np.concatenate([s.first for s in samples]),
                    np.concatenate([s.second for s in samples]),
                    tuple(f"{seed}:{g}" for seed, s in zip(by_seed, samples) for g in s.groups)
                    if all(s.groups for s in samples) else ())
    return Verdict(**common, estimate=estimate, ci_low=low, ci_high=high, n=sum(v.n for v in by_seed.values()),
                   interval_method=f"two-level percentile bootstrap over {len(by_seed)} seeds, then "
                                   f"{first.unit} within each ({N_RESAMPLES} resamples)", sample=pooled)


def pool_verdicts(by_seed: Mapping[int, Sequence[Verdict]]) -> list[Verdict]:
    """One verdict per claim over every seed that made it (:func:`two_level_ci`), in the order of the
    first seed's claims (then claims only later seeds made); a single seed's verdicts come back as they are.

    Args:
        by_seed: each seed's verdicts, e.g. ``{0: verdicts, 1: read_samples(...), 2: ...}``.
    """
    if len(by_seed) <= 1:
        return [v for verdicts in by_seed.values() for v in verdicts]
    claims: dict[str, dict[int, Verdict]] = {}
    for seed, verdicts in by_seed.items():
        for verdict in verdicts:
            claims.setdefault(verdict.claim, {})[int(seed)] = verdict
    return [_pool_one(claim, per_seed) for claim, per_seed in claims.items()]


__all__ = ["N_RESAMPLES", "pool_verdicts", "read_samples", "samples_path", "seed_list", "seed_reports_dir",
           "two_level_ci", "write_samples"]
