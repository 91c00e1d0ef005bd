"""Verdicts over several seeds (rxlib.explain.seeds): kept measurements, the two-level bootstrap, pooling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rxlib.explain.seeds import (
    pool_verdicts,
    read_samples,
    samples_path,
    seed_list,
    seed_reports_dir,
    two_level_ci,
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


def test_identical_seeds_give_an_interval_like_one_seeds():
    values = np.random.default_rng(1).normal(0.5, 0.2, 60)
    low, high = two_level_ci([Sample("mean", values)] * 3)[1:]
    single = mean_ci(values, n_resamples=4000, method="percentile")
    # three copies of the same 60 sites: the seed level adds nothing; the interval narrows by about sqrt(3)
    assert (high - low) == pytest.approx((single[2] - single[1]) / np.sqrt(3), rel=0.25)


def test_two_samples_and_clusters_pool_as_their_statistics_say():
    a = {0: np.array([1.0, 2.0, 3.0]), 1: np.array([2.0, 4.0])}
    b = {0: np.array([0.0, 1.0]), 1: np.array([1.0, 1.0, 1.0])}
    verdict = pool_verdicts({s: [_verdict(a[s], s, second=b[s])] for s in (0, 1)})[0]
    assert verdict.estimate == pytest.approx(np.mean([1, 2, 3, 2, 4]) - np.mean([0, 1, 1, 1, 1]))
    grouped = pool_verdicts({0: [_verdict(np.array([1.0, 1.0, 4.0]), 0, groups=["x", "x", "y"])],
                             1: [_verdict(np.array([2.0]), 1, groups=["x"])]})[0]
    assert grouped.estimate == pytest.approx(2.0)  # every value counts once, clusters weighted by size
    assert grouped.sample.groups == ("0:x", "0:x", "0:y", "1:x")


def test_a_seed_without_measurements_leaves_the_claim_undecided():
    with_sample = _verdict(np.arange(4.0), 0)
    by_hand = make_verdict("c", "paper", "a statement", "a quantity", (1.0, float("nan"), float("nan"), "none"),
                           n=0, unit="sites", threshold=0.0, seeds=(1,))
    pooled = pool_verdicts({0: [with_sample], 1: [by_hand]})[0]
    assert pooled.holds is None and np.isnan(pooled.ci_low) and "seed 1 has no measurements" in pooled.interval_method


def test_samples_round_trip_and_a_bad_file_is_named(tmp_path):
    verdicts = [_verdict(np.array([0.2, 0.5, 0.1]), 3, claim="a"),
                _verdict(np.array([1.0, 2.0]), 3, claim="b", second=np.array([0.5, 0.5, 0.7]))]
    path = write_samples(verdicts, tmp_path, "07_gradcam")
    assert path == samples_path(tmp_path, "07_gradcam")
    back = read_samples(path)
    assert [v.as_row() for v in back] == [v.as_row() for v in verdicts]
    for old, new in zip(verdicts, back):
        assert new.sample.kind == old.sample.kind and np.array_equal(new.sample.first, old.sample.first)
        assert np.array_equal(new.sample.second, old.sample.second)
    path.write_text(json.dumps({"verdicts": [{"claim": "x"}]}))
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
                  seed_reports_dir(tmp_path, 1), "03_losses")
    pooled = context(0, 2, tmp_path).pooled("03_losses", mine)
    assert [v.claim for v in pooled] == ["c"]  # only the claims asked for
    assert pooled[0].seeds == (0, 1) and pooled[0].estimate == pytest.approx(np.mean([0.1, 0.2, 0.3, 0.5, 0.6]))
    assert context(0, 1, tmp_path).pooled("03_losses", mine) == mine


def test_verdict_notebooks_are_those_that_show_verdicts():
    from rxlib import config
    from rxlib.plan import VERDICT_NOTEBOOKS

    showing = sorted(p.stem for p in config.NOTEBOOKS_DIR.glob("*.ipynb") if "ctx.show_verdicts(" in p.read_text())
    assert showing == sorted(VERDICT_NOTEBOOKS)
