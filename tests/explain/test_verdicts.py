"""Verdicts: decisions from intervals, every constructor on numbers whose answer is known, CI coverage,
and the merge into reports/verdicts.csv."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rxlib.explain import verdicts as vd
from rxlib.explain.channels import per_class_recovery
from rxlib.explain.embeddings import template_spread, template_spread_per_class
from rxlib.explain.filters import filter_band_block_stats, filter_unit_flags

RNG = np.random.default_rng(0)
FAST = {"n_resamples": 999}


def _shift(mu: float, n: int = 40, sd: float = 0.01) -> np.ndarray:
    return mu + sd * RNG.standard_normal(n)


def test_bootstrap_helpers_basic():
    est, low, high, used = vd.mean_ci(np.arange(10.0), **FAST)
    assert est == 4.5 and low < 4.5 < high and used == "BCa"
    assert vd.bootstrap_ci((np.array([1.0]),), vd._mean)[2] == "none"
    assert vd.bootstrap_ci((np.full(5, 2.0),), vd._mean)[:2] == (2.0, 2.0)
    # the same data give the same interval (fixed random state)
    assert vd.mean_ci(np.arange(10.0), **FAST) == vd.mean_ci(np.arange(10.0), **FAST)
    with pytest.raises(ValueError, match="non-finite"):
        vd.mean_ci([1.0, np.nan])
    with pytest.raises(ValueError, match="paired samples differ"):
        vd.difference_ci([1, 2], [1, 2, 3], paired=True)


def test_grouped_bootstrap_is_wider_for_clustered_data():
    groups = np.repeat(np.arange(5), 20)
    values = np.repeat(RNG.standard_normal(5), 20) + 0.01 * RNG.standard_normal(100)
    _, lo_u, hi_u, _ = vd.mean_ci(values, **FAST)
    est, lo_g, hi_g, used = vd.mean_ci(values, groups=groups, **FAST)
    assert "grouped (5 groups)" in used and hi_g - lo_g > 2 * (hi_u - lo_u)
    assert lo_g <= est <= hi_g


def test_ci_coverage_close_to_nominal():
    """Percentile intervals of the mean of normal samples cover the true mean about 90% of the time."""
    rng = np.random.default_rng(1)
    covered = []
    for seed in range(200):
        x = rng.normal(1.0, 1.0, 30)
        _, low, high, _ = vd.mean_ci(x, confidence=0.9, method="percentile", n_resamples=499, random_state=seed)
        covered.append(low <= 1.0 <= high)
    assert 0.82 <= np.mean(covered) <= 0.96


def test_verdict_decisions_and_sentence():
    holds = vd.loss_oscillation_verdict(_shift(0.1), _shift(0.02), seeds=[0, 1], unit="runs", **FAST)
    assert holds.holds is True and holds.verdict == "holds" and holds.n_seeds == 2
    s = holds.sentence()
    assert "holds here" in s and f"{holds.estimate:+.4g}" in s and "seeds 0, 1" in s and "above 0" in s
    fails = vd.loss_oscillation_verdict(_shift(0.02), _shift(0.1), **FAST)
    assert fails.holds is False and "does not hold" in fails.sentence()
    straddle = vd.loss_oscillation_verdict(_shift(0.05, sd=0.05), _shift(0.05, sd=0.05), **FAST)
    assert straddle.holds is None and "straddles 0" in straddle.sentence()
    one = vd.loss_oscillation_verdict([0.1], [0.02], seeds=[0])
    assert one.holds is None and np.isnan(one.ci_low) and "no interval could be computed" in one.sentence()
    assert vd.caption(holds).startswith("Verdict: paper (sec4.3-arc-oscillates-osc_val_acc)")
    with pytest.raises(ValueError, match="source"):
        vd.Verdict("x", "blog", "s", "q", 1.0, 0.0, 2.0, 3, "sites", 0.0)


@pytest.mark.parametrize("claim", sorted(vd.PL_CLAIMS))
def test_pseudo_label_verdicts(claim):
    base = _shift(0.3)
    assert vd.pseudo_label_verdict(claim, base, base + 0.1, unit="classes", **FAST).holds is True
    assert vd.pseudo_label_verdict(claim, base, base - 0.1, unit="classes", **FAST).holds is False
    noisy = vd.pseudo_label_verdict(claim, base, base + 0.05 * RNG.standard_normal(40), unit="classes", **FAST)
    assert noisy.holds is None
    with pytest.raises(ValueError, match="unknown claim"):
        vd.pseudo_label_verdict("fig99", base, base, unit="x")


def test_filter_bands_verdict_and_unit_flags():
    rng = np.random.default_rng(3)
    banded = np.repeat(rng.normal(size=(1, 1)), 6, axis=1) * np.ones((40, 6)) + 0.001 * rng.normal(size=(40, 6))
    random = rng.normal(size=(40, 6))
    t, i = filter_unit_flags(banded), filter_unit_flags(random)
    stats = filter_band_block_stats(banded)
    assert t["band"].mean() == stats["band_fraction"] and t["has_duplicate"].mean() == stats["duplicate_fraction"]
    assert vd.filter_bands_verdict("DB(1),DL(6)", t["band"], i["band"], **FAST).holds is True
    assert vd.filter_bands_verdict("DB(1),DL(6)", i["band"], i["band"], **FAST).holds is False  # 0 < margin 0.05
    v = vd.filter_bands_verdict("DB(2),DL(2)", t["has_duplicate"], i["has_duplicate"], measure="has_duplicate", **FAST)
    assert v.claim == "fig10-has_duplicate-DB(2),DL(2)" and v.holds is True


def test_cheating_area_and_control_verdicts():
    clean = _shift(0.6)
    assert vd.cheating_verdict(clean, clean - 0.2, **FAST).holds is True
    assert vd.cheating_verdict(clean, clean + 0.2, **FAST).holds is False
    assert vd.cheating_verdict(clean, clean + 0.05 * RNG.standard_normal(40), **FAST).holds is None
    assert vd.grad_camo_area_verdict(_shift(0.6), _shift(0.4), **FAST).holds is True
    assert vd.grad_camo_area_verdict(_shift(0.3), _shift(0.4), **FAST).holds is False
    control = vd.control_check_verdict(_shift(0.2), _shift(0.9), **FAST)
    assert control.holds is True and control.direction == "less" and "below 0" in control.sentence()
    assert vd.control_check_verdict(_shift(0.9), _shift(0.2), **FAST).holds is False


def test_planted_channel_verdicts_and_per_class_recovery():
    planted = pd.DataFrame(np.eye(6)[[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]] + 0.1 * np.arange(6),
                           index=pd.Index(range(12), name="class_id"), columns=[f"w{i}" for i in range(1, 7)])
    perfect = per_class_recovery(planted, None, planted)
    assert perfect["hit"].tolist() == [1.0] * 12 and np.allclose(perfect["spearman"], 1.0)
    top1, rank = vd.planted_channels_verdicts("eq15_printed[L]", perfect["hit"], perfect["spearman"], **FAST)
    assert top1.holds is True and rank.holds is True and top1.threshold == pytest.approx(1 / 6)
    reversed_ = per_class_recovery(-planted, None, planted)
    top1, rank = vd.planted_channels_verdicts("bad", reversed_["hit"], reversed_["spearman"], source="DCMIX", **FAST)
    assert top1.holds is False and rank.holds is False and top1.source == "DCMIX"
    # one hit in twelve (1/12 < 1/6 but the interval over 12 classes reaches above 1/6): undecided
    top1, _ = vd.planted_channels_verdicts("m", [1] + [0] * 11, np.zeros(12) + 0.01 * RNG.standard_normal(12), **FAST)
    assert top1.holds is None


def test_randomisation_verdict():
    assert vd.randomisation_verdict("Grad-CAM", _shift(0.1), **FAST).holds is True
    flagged = vd.randomisation_verdict("channel means", np.ones(20), **FAST)
    assert flagged.holds is False and "does not hold" in flagged.sentence()


def test_unit_helpers_average_to_the_published_numbers():
    from sklearn.metrics import silhouette_score

    t = RNG.normal(size=(8, 5))
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    assert template_spread_per_class(t, mask).mean() == pytest.approx(template_spread(t, mask))
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    assert vd.silhouette_per_item(t, labels).mean() == pytest.approx(silhouette_score(t, labels, metric="cosine"))


def test_write_verdicts_merges_and_replaces(tmp_path):
    path = tmp_path / "reports" / "verdicts.csv"
    a = vd.loss_oscillation_verdict(_shift(0.1), _shift(0.02), seeds=[0, 1], **FAST)
    b = vd.cheating_verdict(_shift(0.6), _shift(0.4), **FAST)
    c = vd.control_check_verdict(_shift(0.2), _shift(0.9), **FAST)
    vd.write_verdicts([a], path, notebook="03_losses")
    vd.write_verdicts([b, c], path, notebook="07_gradcam")
    merged = pd.read_csv(path, dtype={"seeds": str})
    assert list(merged.columns) == list(vd.VERDICT_COLUMNS)
    assert merged["notebook"].tolist() == ["03_losses", "07_gradcam", "07_gradcam"]
    assert merged.loc[0, "seeds"] == "0 1" and merged.loc[0, "verdict"] == "holds"
    # a rerun of 07 replaces its rows, keeps 03's
    again = vd.write_verdicts([b], path, notebook="07_gradcam")
    assert again["claim"].tolist() == ["sec4.3-arc-oscillates-osc_val_acc", "gradcamo-cheating-cue"]
    assert not list(path.parent.glob("*.tmp*"))
    with pytest.raises(ValueError, match="duplicate claims"):
        vd.write_verdicts([b, b], path, notebook="07_gradcam")
    with pytest.raises(ValueError, match="name the notebook"):
        vd.write_verdicts([b], path, notebook="")
    from rxlib.outputs import RECORD_NAME, read_record

    (path.parent / RECORD_NAME).write_text("")  # a folder claimed by an rxlib command: the files are recorded
    vd.write_verdicts([b], path, notebook="07_gradcam")
    assert {"verdicts.csv", "verdicts.csv.lock"} <= read_record(path.parent)
    pd.DataFrame({"x": [1]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="not a verdicts table"):
        vd.write_verdicts([b], path, notebook="07_gradcam")


def test_verdicts_table_columns():
    table = vd.verdicts_table([vd.randomisation_verdict("Grad-CAM", _shift(0.1), **FAST)])
    assert list(table.columns) == [c for c in vd.VERDICT_COLUMNS if c != "notebook"]
    assert table.loc[0, "verdict"] == "holds" and table.loc[0, "criterion"].endswith("< 0.5")
    assert list(vd.verdicts_table([], brief=True).columns) == list(vd.BRIEF_COLUMNS)


# --- the adapters the notebooks call -------------------------------------------------------------------


def _run(loss: str, acc, seed: int = 0, predictions: pd.DataFrame | None = None):
    from types import SimpleNamespace

    head = "arc" if loss == "arc" else "softmax"
    history = pd.DataFrame({f"val_acc_{head}": acc, f"val_loss_{head}": 2.0 - np.asarray(acc)})
    return SimpleNamespace(config=SimpleNamespace(train={"loss": loss, "seed": seed}), history=history,
                           predictions=predictions)


def test_loss_verdicts_from_runs():
    zigzag = 0.5 + 0.2 * (np.arange(30) % 2)
    smooth = np.linspace(0.5, 0.6, 30)
    found = vd.loss_verdicts({"arc": _run("arc", zigzag), "composite": _run("composite", smooth)}, **FAST)
    assert [v.claim for v in found] == ["sec4.3-arc-oscillates-osc_val_acc", "sec4.3-arc-oscillates-osc_val_loss_rel"]
    assert all(v.holds is True and v.unit == "epoch steps" and v.seeds == (0,) for v in found)
    found = vd.loss_verdicts({"arc": _run("arc", smooth), "composite": _run("composite", zigzag)}, **FAST)
    assert all(v.holds is False for v in found)


def test_control_verdicts_from_runs():
    pred = pd.DataFrame({"well_type": ["negative_control"] * 20 + ["positive_control"] * 20,
                         "top1_prob": np.r_[_shift(0.2, 20), _shift(0.9, 20)]})
    (v,) = vd.control_verdicts({"clean": _run("composite", [0.5, 0.6], seed=3, predictions=pred)}, **FAST)
    assert v.claim == "sec2.2-controls-clean" and v.holds is True and v.seeds == (3,)


def test_grad_camo_verdicts_from_frames():
    n = 30
    clean = pd.DataFrame({"grad_camo": _shift(0.7, n), "cell_fraction": _shift(0.4, n), "experiment": np.repeat(list("abc"), 10)})
    per_image = pd.concat([pd.DataFrame({"site_id": np.arange(n), "model": model, "sites": "cue", "grad_camo": g,
                                         "experiment": np.repeat(list("abc"), 10)})
                           for model, g in (("clean", _shift(0.7, n)), ("cheating", _shift(0.4, n)))])
    found = vd.grad_camo_verdicts(clean, per_image, seeds=[0], **FAST)
    assert [v.claim for v in found] == ["gradcamo-above-area", "gradcamo-cheating-cue"]
    assert all(v.holds is True for v in found) and "grouped (3 groups)" in found[0].interval_method


def test_pseudo_label_and_filter_verdicts_on_tiny_models():
    import torch

    from rxlib.explain.filters import figure10_layers
    from rxlib.models import build_model

    torch.manual_seed(0)
    a, b = build_model("tiny_densenet", 6, embedding_dim=16), build_model("tiny_densenet", 6, embedding_dim=16)
    junk = np.array([0, 0, 0, 0, 1, 1], bool)
    x = RNG.normal(size=(12, 16))
    y = np.repeat([0, 1, 2], 4)
    found = vd.pseudo_label_verdicts({"without PL": a, "with PL": b}, junk, {"without PL": (x, y), "with PL": (x, y)}, **FAST)
    assert [v.claim for v in found] == ["fig7-arc-spread", "fig7-arc-junk", "fig8-softmax-spread", "fig8-softmax-junk",
                                        "fig9-feature-separation"]
    assert found[-1].estimate == 0.0 and found[-1].holds is False  # the same features: no increase
    filters = vd.filter_verdicts(a, a, figure10_layers(a), **FAST)
    assert len(filters) == 4 and all(v.holds is False for v in filters)  # a model against itself


def test_channel_verdicts_pick_eq15_and_dcmix():
    planted = pd.DataFrame(np.eye(6)[[0, 1, 2, 3, 4, 5]] + 0.1 * np.arange(6), index=pd.Index(range(6), name="class_id"),
                           columns=[f"w{i}" for i in range(1, 7)])
    labels = np.repeat(np.arange(6), 3)
    good = planted.loc[labels].to_numpy() + 0.01 * RNG.random((18, 6))
    found = vd.channel_verdicts({"eq15_printed[L]": good, "occlusion_mean": good, "DCMIX (per class)": planted},
                                labels, planted, **FAST)
    assert [v.claim for v in found] == ["channels-top1-eq15_printed[L]", "channels-spearman-eq15_printed[L]",
                                        "channels-top1-DCMIX_(per_class)", "channels-spearman-DCMIX_(per_class)"]
    assert [v.source for v in found] == ["paper", "paper", "DCMIX", "DCMIX"]
    assert found[1].holds is True


def test_ablation_verdicts_pair_the_held_out_sites():
    sites = [f"s{i}" for i in range(60)]
    truth = np.arange(60) % 5
    base_pred = np.where(np.arange(60) % 2 == 0, truth, -1)        # half right
    better_pred = np.where(np.arange(60) % 10 == 9, -1, truth)     # 9 in 10 right
    frame = lambda pred: pd.DataFrame({"site_id": sites, "label": truth, "pred_softmax": pred,
                                       "experiment": np.repeat(list("abcdef"), 10)})
    runs = {"baseline": _run("composite", [0.5], seed=1, predictions=frame(base_pred)),
            "+pseudo-labels": _run("composite", [0.5], seed=1, predictions=frame(better_pred)),
            "+CutMix": _run("composite", [0.5], seed=2, predictions=frame(base_pred).iloc[::-1])}  # same sites, other order
    found = vd.ablation_verdicts(runs, **FAST)
    assert [v.claim for v in found] == ["sec4.4-generalises-pseudo-labels", "sec4.4-generalises-CutMix"]
    assert found[0].estimate == pytest.approx(0.9 - 0.5) and found[0].holds is True and found[0].n == 60
    assert found[0].statement == vd.ABLATION_CLAIMS["+pseudo-labels"] and "grouped (6 groups)" in found[0].interval_method
    assert found[1].estimate == 0.0 and found[1].holds is not True and found[1].seeds == (1, 2)


def test_run_seeds_of_dicts_no_planted_channels_and_control_claim_ids():
    runs = {"a": _run("composite", [0.5], seed=2), "b": _run("composite", [0.5], seed=1)}
    assert vd.run_seeds(runs) == (1, 2) == vd.run_seeds(runs["a"], runs["b"], runs)
    assert vd.channel_verdicts({"eq15_printed[L]": np.ones((2, 6))}, [0, 1], None) == []
    pred = pd.DataFrame({"well_type": ["negative_control"] * 5 + ["positive_control"] * 5, "top1_prob": np.r_[_shift(0.2, 5), _shift(0.9, 5)]})
    (v,) = vd.control_verdicts({"clean twin": _run("composite", [0.5], predictions=pred)}, **FAST)
    assert v.claim == "sec2.2-controls-clean_twin"


def test_runs_of_one_epoch_give_an_undecided_oscillation_verdict_not_an_error():
    from rxlib.explain.verdicts import loss_oscillation_verdict

    verdict = loss_oscillation_verdict(np.array([]), np.array([]), unit="epoch steps")
    assert verdict.holds is None and verdict.verdict == "undecided"
    assert "no interval" in verdict.sentence() and verdict.interval_method.startswith("none")
