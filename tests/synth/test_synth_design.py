"""rxlib.synth profiles, design and rendering, without writing a data set."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rxlib.config import CELL_TYPES, N_CLASSES_RXRX1
from rxlib.synth import PROFILES, SynthConfig, render
from rxlib.synth.config import CELL_TYPE_SHAPES, INNER_WELLS, resolve_config
from rxlib.synth.design import (
    ATOMIC_EFFECTS,
    ClassSpec,
    Effect,
    build_classes,
    build_design,
    experiment_names,
)


def test_profiles_are_valid():
    for name, cfg in PROFILES.items():
        assert isinstance(cfg, SynthConfig)
        assert cfg.validated() is cfg, name
    smoke = PROFILES["smoke"]
    assert smoke.image_size == 64 and smoke.n_junk > 0 and smoke.n_classes == smoke.n_treatments + smoke.n_positive_controls + 1


def test_rxrx1_profile_matches_the_real_layout():
    cfg = PROFILES["rxrx1"]
    assert cfg.n_classes == N_CLASSES_RXRX1 and cfg.negative_control_id == 1138 and cfg.image_size == 512
    names = experiment_names(cfg)
    assert len(names) == 51 and sum(d == "train" for _, _, d in names) == 33
    per_type = {ct: sum(c == ct for _, c, _ in names) for ct in CELL_TYPES}
    assert per_type == {"HEPG2": 11, "HUVEC": 24, "RPE": 11, "U2OS": 5}
    assert len(INNER_WELLS) == 308 and INNER_WELLS[0] == "B02" and INNER_WELLS[-1] == "O23"
    classes = build_classes(cfg, 0)
    assert [c.class_id for c in classes] == list(range(1139))
    assert {c.kind for c in classes[1108:1138]} == {"positive_control"} and classes[1138].sirna == "UNTREATED"


def test_plates_carry_disjoint_groups():
    cfg = resolve_config("smoke", {"n_treatments": 12, "n_junk": 0, "n_plate_groups": 3, "n_plates": 3,
                                       "experiments": (("RPE", 1, 1),), "treatment_replicates": 1})
    design = build_design(cfg, 0)
    groups = {}
    for t in design.tasks:
        if design.classes[t.class_id].kind == "treatment":
            groups.setdefault((t.experiment, t.plate), set()).add(t.class_id)
    sets = [frozenset(g) for g in groups.values()]
    assert len(set(sets)) == 3 and set().union(*sets) == set(range(12))
    assert all(not (a & b) for a in set(sets) for b in set(sets) if a != b)


def test_design_is_independent_of_order():
    cfg = resolve_config("smoke", {"image_size": 32})
    a, b = build_design(cfg, 5), build_design(cfg, 5)
    assert a.tasks == b.tasks and a.wells == b.wells and a.experiments == b.experiments
    assert build_design(cfg, 6).experiments != a.experiments


def test_test_experiments_draw_shifted_batch_effects():
    cfg = dataclasses.replace(PROFILES["smoke"], experiments=(("HUVEC", 60, 60),))
    design = build_design(cfg, 0)
    logs = {"train": [], "test": []}
    for exp in design.experiments.values():
        logs[exp["dataset"]].append(np.log(exp["gain"]))
    train, test = np.array(logs["train"]), np.array(logs["test"])
    assert test.mean() > train.mean() + 0.1 and test.std() > 1.2 * train.std()


def test_every_atomic_effect_renders_inside_cells():
    rng = np.random.default_rng(0)
    base = build_classes(PROFILES["smoke"], 0)[0]
    for effect in ATOMIC_EFFECTS:
        spec = ClassSpec(0, "X", "treatment", False, (Effect(*effect, 1.5),), 1.0)
        site = render.render_cells(rng, 48, 0.4, CELL_TYPE_SHAPES["U2OS"], spec)
        assert site.phenotype.any(), effect
        assert not (site.phenotype & (site.labels == 0)).any(), effect
    assert base.importance().sum() == pytest.approx(1.0)


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_ownership_paths_agree(cell_type, monkeypatch):
    negative = build_classes(PROFILES["smoke"], 0)[-1]
    results = {}
    original = render._ownership
    for method in ("patches", "boxes"):
        monkeypatch.setattr(render, "_ownership", lambda g, s, r, m=method: original(g, s, r, m))
        results[method] = render.render_cells(np.random.default_rng(1), 64, 0.4, CELL_TYPE_SHAPES[cell_type], negative)
    assert np.array_equal(results["patches"].labels, results["boxes"].labels)
    assert np.allclose(results["patches"].signal, results["boxes"].signal)


def test_cell_types_differ_in_size_and_density():
    negative = build_classes(PROFILES["smoke"], 0)[-1]
    counts = {}
    for ct in CELL_TYPES:
        counts[ct] = np.mean([render.render_cells(np.random.default_rng(i), 64, 0.4, CELL_TYPE_SHAPES[ct], negative).n_cells
                              for i in range(4)])
    assert counts["HEPG2"] > max(counts["HUVEC"], counts["RPE"], counts["U2OS"])
    assert counts["RPE"] < counts["U2OS"]


def test_config_round_trips_through_dict():
    cfg = PROFILES["cpu"]
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        SynthConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_each_channel_follows_the_experiment_gain_by_its_own_weight():
    from rxlib.synth.design import experiment_nuisance

    full = experiment_nuisance(PROFILES["smoke"], 0, 3, "test")
    weights = (1.0, 0.0, 0.5, 1.0, 1.0, 1.0)
    scaled = experiment_nuisance(dataclasses.replace(PROFILES["smoke"], exp_gain_channel_scale=weights), 0, 3, "test")
    assert scaled["gain"][1] == 1.0  # w2 does not follow the batch at all
    assert np.allclose(np.log(scaled["gain"]), np.log(full["gain"]) * np.array(weights), atol=1e-3)
    assert scaled["offset"] == full["offset"]  # the other draws are unchanged
    for bad in ({"exp_gain_channel_scale": (1.0,) * 5}, {"exp_gain_channel_scale": (3.0,) * 6},
                {"nucleus_jitter": (0.1, 0.1, 0.1)}, {"nucleus_jitter": (-0.1, 0.1, 0.1, 0.1)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(PROFILES["smoke"], **bad).validated()
