"""Every notebook in notebooks/ runs in the smoke profile through the papermill runner, on the
synthetic data set, and writes every file the manifest declares for it."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from rxlib import config, manifest
from rxlib.reproduce import assert_clean_notebooks, reproduce

NOTEBOOKS = sorted(p.stem for p in config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """The smoke synthetic data set, generated once per test session, with a fresh model cache so that
    the notebooks train their models with the code under test (later notebooks reuse them)."""
    from rxlib.synth import generate

    cache = tmp_path_factory.mktemp("cache")
    previous = os.environ.get("RXLIB_CACHE")
    os.environ["RXLIB_CACHE"] = str(cache)        # inherited by the papermill kernels
    yield generate(tmp_path_factory.mktemp("smoke") / "data", profile="smoke", seed=0, progress=False,
                    workers=os.cpu_count() or 1)
    if previous is None:
        os.environ.pop("RXLIB_CACHE", None)
    else:
        os.environ["RXLIB_CACHE"] = previous


def test_source_notebooks_are_stored_without_outputs():
    assert NOTEBOOKS, "no notebooks found"
    assert_clean_notebooks(config.NOTEBOOKS_DIR)


#: The suite's smoke run trains fewer epochs than the profile (12 for the main model, 6 for the comparison
#: models, about 5 of its 10 minutes): the notebooks' outputs, not the accuracies, are under test here.
#: Two comparison epochs still give every verdict an epoch step to compare.
SUITE_OVERRIDES = {"train.epochs": 4, "budget.comparison_epochs": 2}


@pytest.fixture(scope="session")
def smoke_run(smoke_root, tmp_path_factory):
    """``rxlib reproduce --profile smoke`` once, as a user runs it but with :data:`SUITE_OVERRIDES`: every
    notebook, models trained up front side by side, notebooks side by side. Each test below checks one
    notebook's share of the run."""
    out = tmp_path_factory.mktemp("smoke-run")
    figures, reports = out / "figures", out / "reports"
    result = reproduce(profile="smoke", data_root=smoke_root, figures_dir=figures, reports_dir=reports,
                       overrides=SUITE_OVERRIDES, seeds=1, log=lambda *_: None)  # pooling: test_reproduce
    keep = os.environ.get("RXLIB_SMOKE_REPORTS")  # CI: the browser test then opens every notebook's report
    if keep:
        import shutil

        Path(keep).mkdir(parents=True, exist_ok=True)
        for html in reports.glob("[0-9][0-9]_*.html"):
            shutil.copy2(html, Path(keep) / html.name)
    return result, figures, reports


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_the_smoke_profile(name, smoke_run):
    result, figures, reports = smoke_run
    expected = manifest.expected_files(name, figures)
    assert expected and all(p.is_file() and p.stat().st_size > 0 for p in expected)
    assert set(result.loc[result["notebook"] == name, "file"]) >= {p.name for p in expected}
    assert (reports / f"{name}.ipynb").is_file() and (reports / f"{name}.html").is_file()
    executed = (reports / f"{name}.ipynb").read_text()
    assert '"output_type": "error"' not in executed
    log = pd.read_csv(reports / "run_log.csv")
    assert log.loc[log["notebook"] == name, "status"].tolist() == ["ok"]


def _stdout(notebook: Path) -> str:
    import json

    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stdout")


@pytest.mark.e2e  # a second run of three notebooks with their models: run by CI beside the suite (-m e2e)
def test_explanation_notebooks_run_without_synthetic_truth(smoke_root, tmp_path):
    """Notebooks 05, 07 and 08 on the smoke set with its truth/ folder removed (as real data comes):
    Grad-CAMO on the segmentation, channel importances reported unscored, and each says its mode.
    One epoch per model keeps it short: the outputs, not the accuracies, are under test."""
    import shutil

    plain = tmp_path / "no-truth"
    shutil.copytree(smoke_root, plain, ignore=shutil.ignore_patterns("truth", ".rxlib-*"))
    figures, reports = tmp_path / "figures", tmp_path / "reports"
    names = ["05_embeddings_tsne", "07_gradcam", "08_channel_attention"]
    reproduce(profile="smoke", data_root=plain, only=names, figures_dir=figures, reports_dir=reports,
              overrides={"train.epochs": 1}, seeds=1, log=lambda *_: None)
    for name in names:
        assert all(p.is_file() and p.stat().st_size > 0 for p in manifest.expected_files(name, figures)), name
        out = _stdout(reports / f"{name}.ipynb")
        assert "Mode: no synthetic ground truth" in out, name
    camo = pd.read_csv(figures / "table_grad_camo_scores.csv")
    assert "cell_type" in camo.columns
    cheat = pd.read_csv(figures / "table_cheating_model.csv")
    assert set(cheat["masks"]) == {"segmentation"}
    methods = pd.read_csv(figures / "table_channel_importance_methods.csv")
    assert "top1_agreement" not in methods.columns and {"mean_w1", "top_w6"} <= set(methods.columns)
    assert "no truth masks" in _stdout(reports / "07_gradcam.ipynb")
    assert "no planted channels" in _stdout(reports / "08_channel_attention.ipynb")
