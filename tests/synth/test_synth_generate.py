"""rxlib.synth.writer: layout, labels, truth files, determinism, resume and the spurious cue."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import rxlib.synth.writer as gen
from rxlib.io import read_mask_png, read_png
from rxlib.synth import SynthParameterMismatch, generate

# 3 experiments (2 train, 1 test) x 1 plate x 6 wells x 2 sites = 36 sites of 32x32.
TINY = {"image_size": 32, "n_treatments": 6, "n_junk": 2, "n_positive_controls": 1,
            "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 0)), "n_plates": 1, "treatment_replicates": 1,
            "negative_control_wells": 1, "calibration_sites": 2}
N_SITES = 36


def _make(out: Path, **kwargs) -> Path:
    return generate(out, profile="smoke", seed=kwargs.pop("seed", 0), progress=False, **{**TINY, **kwargs})


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synth") / "tiny")


@pytest.fixture(scope="module")
def tiny_cue(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("synth") / "cue", spurious_cue=True)


def test_metadata_columns_and_layout(tiny):
    meta = pd.read_csv(tiny / "metadata.csv")
    assert list(meta.columns) == ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well",
                                  "site", "well_type", "sirna", "sirna_id"]
    assert len(meta) == N_SITES and meta.site_id.is_unique
    assert set(meta.experiment) == {"HEPG2-01", "HEPG2-02", "U2OS-01"}
    assert set(meta.dataset[meta.experiment == "HEPG2-02"]) == {"test"}
    assert set(meta.site) == {1, 2} and set(meta.plate) == {1}
    for r in meta.itertuples():
        assert r.site_id == f"{r.experiment}_{r.plate}_{r.well}_{r.site}"
        assert r.well_id == f"{r.experiment}_{r.plate}_{r.well}"
        assert r.cell_type == r.experiment.split("-")[0]
        assert r.well[0] in "BCDEFGHIJKLMNO" and 2 <= int(r.well[1:]) <= 23
    r = meta.iloc[0]
    for c in range(1, 7):
        with Image.open(tiny / "images" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}_w{c}.png") as im:
            assert im.mode == "L" and im.size == (32, 32)
    cells = read_mask_png(tiny / "truth" / "masks" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}_cells.png")
    assert cells.dtype == np.uint16 and cells.shape == (32, 32)
    n_images = sum(1 for _ in (tiny / "images").rglob("*.png"))
    assert n_images == 6 * N_SITES
    assert not list(tiny.rglob("*.part"))


def test_label_convention_and_junk_classes(tiny):
    meta = pd.read_csv(tiny / "metadata.csv")
    classes = pd.read_csv(tiny / "truth" / "classes.csv")
    assert list(classes.class_id) == list(range(6 + 1 + 1))
    t, p = 6, 1
    assert set(meta.sirna_id[meta.well_type == "treatment"]) <= set(range(t))
    assert set(meta.sirna_id[meta.well_type == "positive_control"]) == {t}
    assert set(meta.sirna_id[meta.well_type == "negative_control"]) == {t + p}
    assert set(meta.sirna[meta.well_type == "negative_control"]) == {"UNTREATED"}
    junk = classes[classes.junk]
    assert len(junk) == 2 and not junk.in_train.any() and not junk.in_test.any()
    assert not set(junk.class_id) & set(meta.sirna_id)
    assert set(meta.sirna_id) == set(classes.class_id[~classes.junk])
    # every sirna name maps to exactly one id, and the same one as in classes.csv
    assert dict(zip(classes.sirna, classes.class_id)) == {**dict(zip(classes.sirna, classes.class_id)),
                                                          **dict(zip(meta.sirna, meta.sirna_id))}
    assert (meta.groupby("dataset").sirna_id.nunique() == 6).all()  # test experiments carry labels


def test_importance_rows(tiny):
    classes = pd.read_csv(tiny / "truth" / "classes.csv")
    imp = classes[[f"importance_w{c}" for c in range(1, 7)]].to_numpy()
    phenotype = classes.effect != "none"
    assert np.allclose(imp[phenotype].sum(axis=1), 1.0)
    assert np.allclose(imp[~phenotype], 0.0)
    assert set(classes.kind[~phenotype]) <= {"treatment", "negative_control"}
    assert classes.junk[~phenotype & (classes.kind == "treatment")].all()
    for row in classes[phenotype].itertuples():
        channels = row.channels.split(";")
        assert 1 <= len(channels) <= 2
        assert {f"w{c}" for c in range(1, 7) if getattr(row, f"importance_w{c}") > 0} == set(channels)
        assert 0 < row.penetrance <= 1


def test_masks_consistent_with_images(tiny):
    meta = pd.read_csv(tiny / "metadata.csv")
    sites = pd.read_csv(tiny / "truth" / "sites.csv").set_index("site_id")
    treated_pixels = 0
    for r in meta.itertuples():
        base = tiny / "truth" / "masks" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}"
        cells = read_mask_png(f"{base}_cells.png")
        pheno = read_mask_png(f"{base}_phenotype.png")
        assert set(np.unique(pheno)) <= {0, 255}
        assert not (pheno[cells == 0] > 0).any(), f"{r.site_id}: phenotype outside cells"
        assert sites.loc[r.site_id, "n_cells"] == cells.max() == len(np.unique(cells)) - (cells == 0).any()
        if r.well_type == "negative_control":
            assert not pheno.any()
        else:
            treated_pixels += int((pheno > 0).sum())
        w1 = np.asarray(Image.open(tiny / "images" / r.experiment / f"Plate{r.plate}" / f"{r.well}_s{r.site}_w1.png"))
        if (cells > 0).any() and (cells == 0).any():  # nuclei make cells brighter than background in w1
            assert w1[cells > 0].mean() > w1[cells == 0].mean()
    assert treated_pixels > 0


def test_truth_files(tiny):
    params = json.loads((tiny / "truth" / "params.json").read_text())
    assert params["seed"] == 0 and params["profile"] == "smoke" and params["image_size"] == 32
    assert params["n_classes"] == 8 and params["config"]["n_treatments"] == 6
    assert set(params["experiments"]) == {"HEPG2-01", "HEPG2-02", "U2OS-01"}
    assert len(params["wells"]) == 18 and len(params["plates"]) == 3
    sites = pd.read_csv(tiny / "truth" / "sites.csv")
    assert len(sites) == N_SITES and not sites.cue_drawn.any()
    assert {"n_cells", "gain_w1", "offset_w6", "vignette_w3"} <= set(sites.columns)


def test_same_seed_same_bytes_and_workers(tiny, tmp_path):
    again = _make(tmp_path / "again", workers=2)
    assert _hashes(again) == _hashes(tiny)
    other = _make(tmp_path / "other", seed=1)
    assert _hashes(other) != _hashes(tiny)


def test_resume_after_interruption(tiny, tmp_path, monkeypatch):
    out = tmp_path / "partial"
    real = gen.process_site
    calls = {"n": 0}

    def crash_after_ten(state, task):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt("simulated crash")
        return real(state, task)

    monkeypatch.setattr(gen, "process_site", crash_after_ten)
    with pytest.raises(KeyboardInterrupt):
        _make(out)
    monkeypatch.setattr(gen, "process_site", real)
    assert (out / "truth" / "params.json").is_file() and not (out / "metadata.csv").exists()
    stray = out / "images" / "HEPG2-01" / "Plate1" / ".B02_s1_w1.png.abc.part"
    stray.write_bytes(b"half a png")
    _make(out)
    assert _hashes(out) == _hashes(tiny)


def test_other_parameters_refused_unless_overwrite(tiny, tmp_path):
    with pytest.raises(SynthParameterMismatch, match="seed"):
        generate(tiny, profile="smoke", seed=3, progress=False, **TINY)
    with pytest.raises(SynthParameterMismatch, match="image_size"):
        generate(tiny, profile="smoke", seed=0, progress=False, **{**TINY, "image_size": 48})
    out = _make(tmp_path / "x")
    _make(out, seed=2, overwrite=True)
    assert json.loads((out / "truth" / "params.json").read_text())["seed"] == 2
    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)
    with pytest.raises(SynthParameterMismatch, match="params.json"):
        _make(foreign)


def test_spurious_cue_background_and_train_only(tiny, tiny_cue):
    meta = pd.read_csv(tiny / "metadata.csv")
    sites = pd.read_csv(tiny_cue / "truth" / "sites.csv").set_index("site_id")
    changed_sites = 0
    for r in meta.itertuples():
        assert sites.loc[r.site_id, "cue_drawn"] == (r.dataset == "train")
        rel = Path(r.experiment) / f"Plate{r.plate}"
        cells = read_mask_png(tiny / "truth" / "masks" / rel / f"{r.well}_s{r.site}_cells.png")
        assert np.array_equal(cells, read_mask_png(tiny_cue / "truth" / "masks" / rel / f"{r.well}_s{r.site}_cells.png"))
        for c in range(1, 7):
            a = read_png(tiny / "images" / rel / f"{r.well}_s{r.site}_w{c}.png")
            b = read_png(tiny_cue / "images" / rel / f"{r.well}_s{r.site}_w{c}.png")
            diff = a != b
            if r.dataset == "test" or c != 6:
                assert not diff.any(), f"{r.site_id} w{c}: cue where it must not be"
            else:
                assert not diff[cells > 0].any(), f"{r.site_id}: cue inside cells"
                changed_sites += bool(diff.any())
    assert changed_sites > 0


@pytest.mark.parametrize("overrides, message", [
    ({"image_size": 8}, "image_size"),
    ({"n_junk": 6}, "n_junk"),
    ({"n_sites": 3}, "n_sites"),
    ({"experiments": (("HELA", 1, 1),)}, "HELA"),
    ({"treatment_replicates": 100}, "wells"),
    ({"no_such_thing": 1}, "no_such_thing"),
    ({"cue_channel": 7}, "cue_channel"),
])
def test_bad_parameters_raise(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "bad", profile="smoke", progress=False, **{**TINY, **overrides})
    assert not (tmp_path / "bad").exists()


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        generate(tmp_path / "a", profile="huge", progress=False)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path / "a", seed=-1, progress=False)
    with pytest.raises(ValueError, match="workers"):
        generate(tmp_path / "a", workers=0, progress=False)
