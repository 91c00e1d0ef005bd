"""Verdicts over several seeds (rxlib.explain.seeds): kept measurements, the two-level bootstrap, pooling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rxlib.explain.seeds import (
    attainable_range,
    pool_verdicts,
    read_samples,
    samples_path,
    seed_list,
    seed_reports_dir,
    seed_t_interval,
    write_samples,
)
from rxlib.explain.verdicts import Sample, difference_ci, make_verdict, mean_ci, verdicts_table


def _verdict(values, seed, *, claim="c", groups=None, second=None):
    estimate = (mean_ci(values, groups=groups, n_resamples=999) if second is None
                else difference_ci(values, second, paired=False, n_resamples=999))
    return make_verdict(claim, "paper", "a statement", "a quantity", estimate, n=len(values), unit="sites",
                        threshold=0.0, seeds=(seed,))


def test_a_verdict_keeps_its_measurements_but_the_table_does_not_show_them():
    values = np.array([0.1, 0.3, 0.2, 0.4])
    verdict = _verdict(values, 0)
    assert verdict.sample.kind == "mean" and np.array_equal(verdict.sample.first, values)
    assert "sample" not in verdict.as_row() and "sample" not in verdicts_table([verdict]).columns
    paired = difference_ci(values, values / 2, paired=True, n_resamples=999)
    assert paired.sample.kind == "mean" and np.allclose(paired.sample.first, values / 2)
    two = difference_ci(values, values + 1, paired=False, n_resamples=999)
    assert two.sample.kind == "two-sample" and np.array_equal(two.sample.second, values + 1)
    grouped = mean_ci(values, groups=["a", "a", "b", "b"], n_resamples=999)
    assert grouped.sample.groups == ("a", "a", "b", "b")


def test_one_seed_comes_back_unchanged():
    verdicts = [_verdict(np.arange(5.0), 0)]
    assert pool_verdicts({0: verdicts}) == verdicts


def test_pooled_estimate_is_the_pooled_mean_and_seed_spread_widens_the_interval():
    rng = np.random.default_rng(0)
    per_seed = {seed: rng.normal(loc, 0.05, 40) for seed, loc in ((0, 0.0), (1, 1.0), (2, 2.0))}
    pooled = pool_verdicts({seed: [_verdict(v, seed)] for seed, v in per_seed.items()})
    assert len(pooled) == 1
    verdict = pooled[0]
    everything = np.concatenate(list(per_seed.values()))
    assert verdict.estimate == pytest.approx(everything.mean())
    assert verdict.seeds == (0, 1, 2) and verdict.n_seeds == 3 and verdict.n == 120
    assert "two-level" in verdict.interval_method
    assert verdict.ci_low <= verdict.estimate <= verdict.ci_high
    # pooled as if all 120 sites came from one run: an interval far narrower than the seed spread
    one_level = mean_ci(everything, n_resamples=999)
    assert (verdict.ci_high - verdict.ci_low) > 5 * (one_level[2] - one_level[1])


def test_seeds_that_disagree_widen_the_interval_to_the_t_interval_of_their_estimates():
    rng = np.random.default_rng(1)
    per_seed = {seed: rng.normal(loc, 0.02, 40) for seed, loc in ((0, 0.0), (1, 0.3), (2, 0.6))}
    verdict = pool_verdicts({seed: [_verdict(v, seed)] for seed, v in per_seed.items()})[0]
    means = np.array([v.mean() for v in per_seed.values()])
    half = 4.3027 * means.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert verdict.ci_low == pytest.approx(means.mean() - half, abs=1e-3)
    assert verdict.ci_high == pytest.approx(means.mean() + half, abs=1e-3)
    assert "widened to the Student-t interval" in verdict.interval_method and verdict.holds is None
    low, high = seed_t_interval([Sample("mean", v) for v in per_seed.values()])
    assert (low, high) == pytest.approx((verdict.ci_low, verdict.ci_high))


def test_a_widened_interval_never_leaves_the_values_the_statistic_can_take():
    # top-1 hits of 18 classes per seed: 17, 18 and 15 right, a pooled rate near 0.93 whose t interval passes 1
    per_seed = {0: np.r_[np.ones(17), 0.0], 1: np.ones(18), 2: np.r_[np.ones(15), np.zeros(3)]}

    def rate(values, seed):
        return make_verdict("c", "paper", "s", "q", mean_ci(values, bounds=(0.0, 1.0), n_resamples=999),
                            n=len(values), unit="classes", threshold=0.0, seeds=(seed,))

    verdict = pool_verdicts({seed: [rate(v, seed)] for seed, v in per_seed.items()})[0]
    low, high = seed_t_interval([Sample("mean", v) for v in per_seed.values()])
    assert high > 1.0  # the t interval alone would claim a hit rate above 1
    assert verdict.ci_high == 1.0 and 0.0 <= verdict.ci_low <= low + 1e-12  # the low end is still widened
    assert "clipped to the values the statistic can take" in verdict.interval_method
    # the same 0/1 values without declared bounds (e.g. paired differences that happen to be 0 or 1): not clipped
    unbounded = pool_verdicts({seed: [_verdict(v, seed)] for seed, v in per_seed.items()})[0]
    assert unbounded.ci_high == pytest.approx(high) and "clipped" not in unbounded.interval_method
    assert attainable_range([Sample("mean", np.ones(2), bounds=(-1.0, 1.0))] * 2) == (-1.0, 1.0)


def test_two_samples_pool_per_seed_differences_and_clusters_keep_their_weight():
    a = {0: np.array([1.0, 2.0, 3.0]), 1: np.array([2.0, 4.0])}
    b = {0: np.array([0.0, 1.0]), 1: np.array([1.0, 1.0, 1.0])}
    verdict = pool_verdicts({s: [_verdict(a[s], s, second=b[s])] for s in (0, 1)})[0]
    # seed 0: 2 - 0.5 = 1.5, seed 1: 3 - 1 = 2, each weighted 1 / (1/3 + 1/2) = 1.2
    assert verdict.estimate == pytest.approx(1.75)
    # each seed finds no difference, at levels 0 and 10 with unequal sizes: pooled, still none
    simpson = pool_verdicts({0: [_verdict(np.zeros(9), 0, second=np.zeros(1))],
                             1: [_verdict(np.full(1, 10.0), 1, second=np.full(9, 10.0))]})[0]
    assert simpson.estimate == pytest.approx(0.0)
    grouped = pool_verdicts({0: [_verdict(np.array([1.0, 1.0, 4.0]), 0, groups=["x", "x", "y"])],
                             1: [_verdict(np.array([2.0]), 1, groups=["x"])]})[0]
    assert grouped.estimate == pytest.approx(2.0)  # every value counts once, clusters weighted by size
    assert "then clusters within each" in grouped.interval_method


def test_a_claim_of_one_seed_comes_back_unchanged_and_a_doubled_claim_is_refused():
    only_mine = _verdict(np.arange(4.0), 0, claim="mine")
    pooled = pool_verdicts({0: [only_mine, _verdict(np.arange(3.0), 0)], 1: [_verdict(np.arange(5.0), 1)]})
    assert pooled[0] is only_mine and pooled[1].seeds == (0, 1)
    with pytest.raises(ValueError, match="seed 1 has the claim 'c' twice"):
        pool_verdicts({0: [_verdict(np.arange(3.0), 0)], 1: [_verdict(np.arange(3.0), 1)] * 2})


def test_an_estimate_copies_and_pickles_with_its_sample():
    import copy
    import pickle

    estimate = mean_ci([0.1, 0.4, 0.2], n_resamples=999)
    for clone in (copy.deepcopy(estimate), pickle.loads(pickle.dumps(estimate))):
        assert tuple(clone) == tuple(estimate) and np.array_equal(clone.sample.first, estimate.sample.first)


def test_a_seed_without_measurements_leaves_the_claim_undecided():
    with_sample = _verdict(np.arange(4.0), 0)
    by_hand = make_verdict("c", "paper", "a statement", "a quantity", (1.0, float("nan"), float("nan"), "none"),
                           n=0, unit="sites", threshold=0.0, seeds=(1,))
    pooled = pool_verdicts({0: [with_sample], 1: [by_hand]})[0]
    assert pooled.holds is None and np.isnan(pooled.ci_low) and pooled.interval_method == "none: seed 1 has no measurements"
    with_nan = _verdict(np.arange(4.0), 1)
    object.__setattr__(with_nan, "sample", Sample("mean", np.array([1.0, np.nan])))
    assert "non-finite" in pool_verdicts({0: [with_sample], 1: [with_nan]})[0].interval_method


def test_samples_round_trip_and_a_bad_file_is_named(tmp_path):
    rate = make_verdict("r", "paper", "s", "q", mean_ci(np.array([1.0, 0.0]), bounds=(0.0, 1.0), n_resamples=99),
                        n=2, unit="classes", threshold=0.0, seeds=(3,))
    verdicts = [_verdict(np.array([0.2, 0.5, 0.1]), 3, claim="a"),
                _verdict(np.array([1.0, 2.0]), 3, claim="b", second=np.array([0.5, 0.5, 0.7])), rate]
    run = {"profile": "smoke", "settings": "{}"}
    path = write_samples(verdicts, tmp_path, "07_gradcam", run=run)
    assert path == samples_path(tmp_path, "07_gradcam")
    back = read_samples(path, expect=run)
    assert [v.as_row() for v in back] == [v.as_row() for v in verdicts]
    for old, new in zip(verdicts, back):
        assert new.sample.kind == old.sample.kind and np.array_equal(new.sample.first, old.sample.first)
        assert np.array_equal(new.sample.second, old.sample.second) and new.sample.bounds == old.sample.bounds
    assert back[2].sample.bounds == (0.0, 1.0) and back[0].sample.bounds is None
    with pytest.raises(ValueError, match=r"07_gradcam.json comes from another run \(profile: 'smoke' here, 'paper'"):
        read_samples(path, expect={**run, "profile": "paper"})
    good = json.loads(path.read_text())["verdicts"][0]
    for bad in ({"verdicts": [{"claim": "x"}]}, {"verdicts": ["abc"]}, {"verdicts": {"a": 1}}, [1, 2], "{",
                {"verdicts": [{**good, "sample": {**good["sample"], "kind": "median"}}]},
                {"verdicts": [{**good, "sample": {**good["sample"], "groups": "abc"}}]},
                {"verdicts": [{**good, "sample": {**good["sample"], "bounds": [0]}}]},
                {"verdicts": [{**good, "estimate": None}]}):
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        with pytest.raises(ValueError, match="07_gradcam.json is not a verdict-samples file"):
            read_samples(path)
    with pytest.raises(FileNotFoundError, match="no verdict samples"):
        read_samples(tmp_path / "missing.json")


def test_seed_list_and_folders():
    assert seed_list(5, 3) == [5, 6, 7]
    with pytest.raises(ValueError, match="seeds must be at least 1, got 0"):
        seed_list(0, 0)
    assert seed_reports_dir("/r", 2).as_posix() == "/r/seeds/seed2"


def test_the_context_pools_other_seeds_or_names_the_missing_file(tmp_path):
    from rxlib.notebook import NotebookContext

    def context(seed, seeds, reports):
        return NotebookContext("smoke", seed, tmp_path, tmp_path / "figs", reports, None, True, {}, seeds)

    mine = [_verdict(np.array([0.1, 0.2, 0.3]), 0)]
    with pytest.raises(FileNotFoundError, match=r"seed 1's verdicts of 03_losses are missing .*--seeds 2"):
        context(0, 2, tmp_path).pooled("03_losses", mine)
    write_samples([_verdict(np.array([0.5, 0.6]), 1), _verdict(np.array([9.0, 9.0]), 1, claim="other")],
                  seed_reports_dir(tmp_path, 1), "03_losses", run=context(1, 1, tmp_path).run_identity())
    pooled = context(0, 2, tmp_path).pooled("03_losses", mine)
    assert [v.claim for v in pooled] == ["c"]  # only the claims asked for
    assert pooled[0].seeds == (0, 1) and pooled[0].estimate == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.5, 0.6]))
    assert context(0, 1, tmp_path).pooled("03_losses", mine) == mine
    alone = tmp_path / "alone"
    with pytest.raises(ValueError, match="seed 0 has the claim 'c' twice"):
        context(0, 1, alone).show_verdicts("03_losses", mine, mine)
    assert not samples_path(alone, "03_losses").exists() and not (alone / "verdicts.csv").exists()


def test_verdict_notebooks_are_those_that_show_verdicts():
    from rxlib import config
    from rxlib.plan import VERDICT_NOTEBOOKS

    showing = sorted(p.stem for p in config.NOTEBOOKS_DIR.glob("*.ipynb") if "ctx.show_verdicts(" in p.read_text())
    assert showing == sorted(VERDICT_NOTEBOOKS)
