"""The plan of a run (rxlib.plan): budget, model table, overrides, comparisons, dry run, device errors."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from benchmarks.gpu_check import COLUMNS as GPU_CHECK_COLUMNS  # the file the plan reads measured rates from

from rxlib import cli, config, manifest
from rxlib.data.roots import resolve_data_root, synthetic_profile
from rxlib.plan import (
    ASSUMED_RATES,
    MODELS,
    Rates,
    build_plan,
    budget_note,
    check_distinct,
    format_plan,
    measured_rates,
    model_config,
    notebook_model_names,
    notebook_models,
    summarise_data,
)
from rxlib.reproduce import reproduce

from rxlib.profiles import cheating_run_config, run_config, settings

KAGGLE_2019 = config.shared_rxrx1_dir() / "kaggle-2019"
needs_kaggle = pytest.mark.skipif(not (KAGGLE_2019 / "train.csv").is_file(),
                                  reason="the Kaggle 2019 RxRx1 metadata is not beside the project")


@pytest.fixture(scope="module")
def kaggle():
    if not (KAGGLE_2019 / "train.csv").is_file():
        pytest.skip("the Kaggle 2019 RxRx1 metadata is not beside the project")
    return summarise_data(KAGGLE_2019)


@needs_kaggle
def test_paper_plan_fits_24_gpu_hours_on_the_full_rxrx1(kaggle):
    plan = build_plan("paper", data=kaggle, rates=Rates())  # the assumed rates, whatever this machine measured
    assert kaggle.n_sites == 81_224 + 44_286
    assert 0 < plan.total_gpu_hours <= 24, format_plan(plan)
    main = plan.models[plan.models["model"] == "main"]
    assert (main["action"] == "train").sum() == 1  # trained once, reused everywhere else
    # the labelled training sites less the training experiments held out to score the treatments
    # (the Kaggle test treatments carry no labels: rxlib.data.splits.validation_experiments)
    from rxlib.data import read_metadata
    from rxlib.data.splits import part_mask, validation_experiments

    table = read_metadata(KAGGLE_2019)
    assert validation_experiments(table) == ["HEPG2-07", "HUVEC-16", "RPE-07", "U2OS-03"]
    n_train = int((part_mask(table, "train") & (table["label"] >= 0)).sum())
    assert 0 < n_train < 81_224
    assert main["epochs"].iloc[0] == 30 and main["images_per_epoch"].iloc[0] == n_train
    comparisons = plan.models[plan.models["model"] != "main"]
    assert (comparisons["budget"] != "full").all() and (comparisons["epochs"] < 30).all()
    assert plan.prep["disk_gb"] == pytest.approx(kaggle.n_sites * 6 * 512 * 512 / 1e9)


@needs_kaggle
def test_plan_lists_every_notebook_and_every_model_it_requests(kaggle):
    plan = build_plan("paper", data=kaggle, rates=Rates())
    assert list(plan.notebooks["notebook"]) == list(manifest.NOTEBOOKS)
    table = notebook_model_names("paper")
    expected = [(nb, label, name) for nb, models in table.items() for label, name in models.items()]
    assert list(plan.models[["notebook", "label", "model"]].itertuples(index=False, name=None)) == expected
    text = format_plan(plan)
    for nb in manifest.NOTEBOOKS:
        assert nb in text
    assert "total" in text and ("MISSING" in text or "present" in text)


def test_notebooks_ask_for_exactly_the_models_of_the_table():
    """What the notebooks train is what the plan prices: each notebook asks for its models through
    ctx.models('NN') (the table's entry) or ctx.model(name) for the names the table lists."""
    table = notebook_model_names("smoke")
    for path in sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        source = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                           if c["cell_type"] == "code")
        asked = set()
        for number in re.findall(r'ctx\.models\("(\d\d)"\)', source):
            assert path.stem.startswith(number)
            asked |= set(table[path.stem].values())
        asked |= set(re.findall(r'ctx\.model\("(\w+)"\)', source))
        assert asked == set(table[path.stem].values()), path.name
        assert "train_or_load(" not in source and "run_config(" not in source, path.name
        assert 'overrides = ""' in source and "overrides" in source.split("setup(", 1)[1].split(")", 1)[0]


@needs_kaggle
def test_overrides_change_the_plan(kaggle):
    base = build_plan("paper", data=kaggle, rates=Rates())
    shorter = build_plan("paper", data=kaggle, rates=Rates(),
                         overrides=["train.epochs=10", "budget.comparison_epochs=2"])
    main = shorter.models.set_index("model").loc["main"].iloc[0]
    assert main["epochs"] == 10
    assert set(shorter.models.loc[shorter.models["model"] != "main", "epochs"]) == {2}
    assert shorter.total_gpu_hours < base.total_gpu_hours
    faster = build_plan("paper", data=kaggle, rates=Rates(300.0, 900.0, "test"))
    assert faster.total_gpu_hours == pytest.approx(base.total_gpu_hours / 2)
    assert "overrides: train.epochs=10" in format_plan(shorter)


@pytest.mark.parametrize("overrides, named", [
    ({"train.epoch": 3}, "train.epoch"),
    ({"train.epochs": "abc"}, "train.epochs"),
    ({"train.epochs": 0}, "epochs"),
    ({"budget.comparison_epoch": 2}, "budget.comparison_epoch"),
    ({"budget.comparison_plates": 7}, "budget.comparison_plates"),
    ({"epochs": 3}, "epochs"),
    ({"data.augment": "yes"}, "data.augment"),
    (["train.epochs"], "train.epochs"),
])
def test_bad_overrides_are_one_line_naming_the_key(overrides, named):
    with pytest.raises(ValueError, match=re.escape(named)) as info:
        settings("paper", overrides)
    assert "\n" not in str(info.value)


def test_overrides_parse_json_values_and_text():
    s = settings("paper", ["train.epochs=10", "train.device=cpu", "budget.comparison_plates=[1]",
                           "train.pretrained=false"])
    assert s.train["epochs"] == 10 and s.train["device"] == "cpu" and s.train["pretrained"] is False
    assert s.budget["comparison_plates"] == [1]
    assert settings("smoke", '{"train.lr": 0.01}').train["lr"] == 0.01


def test_smoke_main_model_keeps_its_full_budget_and_comparisons_differ_in_one_factor():
    """Smoke's main model is the profile's recipe at 12 epochs (the model notebooks 05-08 explain); every
    comparison model trains on the comparison budget of 6 epochs and differs from the reference recipe
    in its one factor only."""
    s = settings("smoke")
    # the recipe itself, without the held-out pass after each epoch (no notebook shows its curves)
    assert model_config(s, "main").config_hash() == run_config("smoke", validate_each_epoch=False).config_hash()
    # that setting at its default leaves the key as it was before the setting existed
    assert "validate_each_epoch" not in run_config("smoke").identity()["train"]
    assert run_config("smoke").train["epochs"] == 12
    reference = model_config(s, "reference")
    assert reference.train["epochs"] == 6 and reference.train["pseudo_t2"] <= 6
    factors = {"resnet": {"arch": "tiny_resnet"}, "softmax_only": {"loss": "softmax"}, "arc_only": {"loss": "arc"},
               "baseline": {}, "without_pl": {}, "cutmix_only": {"cutmix": True}, "pl_only": {"pseudo_label": True},
               "cutmix_pl": {"cutmix": True, "pseudo_label": True}, "with_pl": {"pseudo_label": True}}
    for name, change in factors.items():
        config = model_config(s, name)
        assert config.train == {**reference.train, **change}, name
        assert config.data == reference.data, name
    assert set(factors) | {"main", "reference", "clean_twin", "cheating", "label_shuffled"} == set(MODELS)


@pytest.mark.parametrize("profile", ["smoke", "paper-mini", "paper"])
def test_comparisons_never_compare_a_model_with_itself(profile):
    s = settings(profile)
    for nb, models in notebook_model_names(profile).items():
        hashes = [model_config(s, name).config_hash() for name in models.values()]
        assert len(set(hashes)) == len(hashes), (nb, models)
    cheating, twin = model_config(s, "cheating"), model_config(s, "clean_twin")
    assert cheating.data.pop("cue") is True and cheating.identity() == twin.identity()
    # the paper profile already uses pseudo-labels: 05's "without PL" must still switch them off
    assert model_config(s, "without_pl").train["pseudo_label"] is False
    assert model_config(s, "with_pl").train["pseudo_label"] is True


def test_check_distinct_names_both_labels():
    check_distinct("02_backbone", {"a": "k1", "b": "k2"})
    with pytest.raises(ValueError, match=r"02_backbone: 'a' and 'b' are the same model \(registry key k1\)"):
        check_distinct("02_backbone", {"a": "k1", "b": "k1"})


def test_compared_groups_leave_out_what_is_not_compared():
    from rxlib.plan import compared_groups

    assert compared_groups("03_losses", ["softmax", "arc", "composite"]) == [["softmax", "arc", "composite"]]
    assert compared_groups("06_conv_filters", ["main"]) == []
    labels = ["main", "clean", "cheating", "reference", "label-shuffled"]
    assert compared_groups("07_gradcam", labels) == [["clean", "cheating"], ["reference", "label-shuffled"]]
    # without a budget, main and the reference are one model: 07 does not compare them, so no error
    s = settings("smoke", {"budget.comparison_epochs": None, "budget.comparison_plates": None})
    assert model_config(s, "main").config_hash() == model_config(s, "reference").config_hash()
    keys = {label: model_config(s, name).config_hash() for label, name in notebook_model_names("smoke")["07_gradcam"].items()}
    for group in compared_groups("07_gradcam", keys):
        check_distinct("07_gradcam", {label: keys[label] for label in group})


def test_the_label_shuffled_model_differs_from_the_reference_in_its_labels_alone():
    s = settings("smoke")
    shuffled, reference = model_config(s, "label_shuffled"), model_config(s, "reference")
    assert shuffled.data.pop("shuffle_labels") is True and shuffled.identity() == reference.identity()


@needs_kaggle
def test_notebook_models_refuses_a_self_comparison_before_training(monkeypatch):
    import rxlib.train.registry as registry

    monkeypatch.setattr(registry, "train_or_load", lambda *a, **k: pytest.fail("trained despite the clash"))
    s = settings("paper", {"train.arch": "resnet50"})  # the recipe's backbone is now the comparison one
    with pytest.raises(ValueError, match="02_backbone: 'resnet50' and 'resnet50'|02_backbone: .* same model"):
        notebook_models(s, "02", KAGGLE_2019)
    keys = {name: registry.model_key(model_config(settings("paper"), name), KAGGLE_2019)
            for name in ("without_pl", "with_pl")}
    assert keys["without_pl"] != keys["with_pl"]


def test_paper_mini_is_the_paper_recipe_at_toy_size():
    paper, mini = run_config("paper").train, run_config("paper-mini").train
    for key in ("arch", "memory_efficient", "loss", "composite_c", "arc_scale", "arc_margin", "cutmix",
                "pseudo_label", "cosine_schedule", "channels_last", "embedding_dim"):
        assert mini[key] == paper[key], key
    assert mini["device"] == "cpu" and mini["epochs"] == 1 and mini["batch_size"] == 4
    assert mini["max_batches_per_epoch"] == 2 and mini["num_workers"] == 2 and mini["pretrained"] is False
    assert paper["pretrained"] is True  # the paper fine-tunes ImageNet weights; the plan says if they are here
    s = settings("paper-mini")
    assert model_config(s, "reference").train["max_batches_per_epoch"] == 1  # its comparisons are reduced too
    assert synthetic_profile("paper-mini") == "paper-mini" and synthetic_profile("smoke") == "smoke"


def test_paper_mini_plan_from_the_synthetic_design():
    from rxlib.synth.config import PROFILES as SYNTH

    synth = "paper-mini" if "paper-mini" in SYNTH else "smoke"
    from rxlib.plan import summarise_synthetic

    plan = build_plan("paper-mini", data=summarise_synthetic(synth), rates=Rates())
    assert set(plan.models["images_per_epoch"]) <= {4, 8}  # 1 or 2 steps of batch 4
    assert plan.total_gpu_hours < 0.01


def test_measured_rates_read_gpu_check_csv(tmp_path):
    assert measured_rates(tmp_path / "absent.csv") is None
    path = tmp_path / "gpu_check.csv"
    columns = ",".join(GPU_CHECK_COLUMNS)

    def row(**values):
        return ",".join(str(values.get(c, "")) for c in GPU_CHECK_COLUMNS)

    path.write_text("\n".join([columns,
                               row(section="train", what="fp32", status="ok", image_size=512, images_per_s=90.0),
                               row(section="train", what="bf16_channels_last", status="ok", image_size=512,
                                   images_per_s=210.5),
                               row(section="max_batch", what="bf16_channels_last_at_max_batch", status="ok",
                                   image_size=512, images_per_s=230.0),
                               row(section="train", what="bf16_channels_last_compiled", status="timeout",
                                   image_size=512),
                               row(section="gradcam", what="rxlib", status="ok", image_size=512, images_per_s=900)]))
    rates = measured_rates(path)
    ratio = ASSUMED_RATES["infer_images_per_s"] / ASSUMED_RATES["train_images_per_s"]
    assert rates.train_images_per_s == 230.0 and rates.infer_images_per_s == pytest.approx(230.0 * ratio)
    assert "measured" in rates.source
    # a CPU smoke run measures toy sizes only: the assumed rates stay
    path.write_text("\n".join([columns, row(section="train", what="bf16_channels_last", status="ok", image_size=32,
                                            images_per_s=29.0)]))
    assert measured_rates(path) is None
    path.write_text("something,else\n1,2\n")
    assert measured_rates(path) is None


def test_plate_subset_renumbers_items():
    from rxlib.train.registry import PlateSubset

    class Sites(torch.utils.data.Dataset):
        table = pd.DataFrame({"plate": [1, 2, 3, 1], "site_id": list("abcd")})

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"index": i, "site": self.table["site_id"][i]}

    subset = PlateSubset(Sites(), [1])
    assert len(subset) == 2 and list(subset.table["site_id"]) == ["a", "d"]
    assert subset[1] == {"index": 1, "site": "d"}


@needs_kaggle
def test_dry_run_prints_the_plan_table(tmp_path):
    lines: list[str] = []
    reproduce(profile="paper", data_root=KAGGLE_2019, dry_run=True, figures_dir=tmp_path / "f",
              reports_dir=tmp_path / "r", log=lines.append, overrides=["budget.comparison_epochs=3"])
    text = "\n".join(lines)
    assert "GPU-h" in text and re.search(r"^\s+total\s+[\d.]+", text, re.M)
    assert "overrides: budget.comparison_epochs=3" in text and "ImageNet weights" in text
    assert not (tmp_path / "f").exists() and not (tmp_path / "r").exists()


def test_paper_without_data_names_the_data_flag(monkeypatch):
    monkeypatch.delenv("RXLIB_DATA", raising=False)
    with pytest.raises(ValueError, match="--data,"):
        resolve_data_root("paper", 0)


@needs_kaggle
def test_gpu_less_device_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = cli.main(["reproduce", "--profile", "paper", "--data", str(KAGGLE_2019),
                   "--figures-dir", str(tmp_path / "f"), "--reports-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--set train.device=cpu" in err, err
    assert not (tmp_path / "r").exists()
    config_file = tmp_path / "paper.json"
    config_file.write_text(json.dumps({"profile": "paper", "data_root": str(KAGGLE_2019)}))
    rc = cli.main(["train", "--config", str(config_file), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--device cpu" in err, err


def test_bad_set_on_the_command_line_is_one_line(capsys):
    rc = cli.main(["reproduce", "--profile", "paper", "--dry-run", "--set", "train.epoch=3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "train.epoch" in err and "3" in err


def test_reproduce_help_mentions_the_plan(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--help"])
    out = capsys.readouterr().out
    assert "--dry-run" in out and "GPU-hours" in out and "--set" in out


def test_manifest_marks_the_figures_of_comparison_models():
    reduced = {it.item for it in manifest.PAPER_ITEMS if it.reduced}
    assert {"Figure 6", "Figure 7", "Extra: backbone comparison", "Extra: cheating model"} <= reduced
    assert "Figure 11" not in reduced


def test_every_profile_has_an_entry_in_every_per_profile_table():
    from rxlib import profiles

    for table in (profiles.BACKBONE_COMPARISON, profiles.CHEATING_OVERRIDES,
                  profiles.GRADCAM_LAYER, profiles.BUDGETS):
        assert set(table) == set(profiles.PROFILES)


def test_notebook_setup_takes_overrides_as_json(tmp_path):
    from rxlib.notebook import setup

    with pytest.raises(ValueError, match="train.epoch"):
        setup("smoke", str(tmp_path), overrides='{"train.epoch": 1}')
    ctx = setup("smoke", str(tmp_path), overrides='{"train.epochs": 2, "budget.comparison_epochs": 1}')
    assert ctx.settings().train["epochs"] == 2
    plates = "plate 1 of each experiment only"
    assert ctx.caption("Figure 6") == f"Figure 6 (reduced budget: 1 epoch instead of 2, {plates})"
    assert setup("smoke", str(tmp_path)).caption("Figure 6") == f"Figure 6 (reduced budget: 6 epochs instead of 12, {plates})"
    assert setup("smoke", str(tmp_path), overrides='{"budget.comparison_epochs": null, "budget.comparison_plates": null}'
                 ).caption("Figure 6") == "Figure 6"


def test_a_comparison_budget_only_reduces():
    """Smoke with --set train.epochs=2: the comparison budget of 6 epochs would be more than the recipe,
    so comparison models keep 2 and no caption speaks of a reduced budget (with all plates)."""
    s = settings("smoke", {"train.epochs": 2, "budget.comparison_plates": None})
    assert model_config(s, "softmax_only").train["epochs"] == 2
    assert model_config(s, "reference").config_hash() == model_config(s, "main").config_hash()
    assert budget_note(s) == ""
    assert model_config(settings("smoke"), "softmax_only").train["epochs"] == 6
