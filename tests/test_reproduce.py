"""Tests of the papermill runner on tiny throwaway notebooks (a few kernel starts, ~20 s in all)."""
from __future__ import annotations

import json
import os
import time
import types

import nbformat
import pandas as pd
import pytest

from rxlib import config, manifest
from rxlib.manifest import PaperItem
from rxlib.reproduce import (
    DirtyNotebookError,
    MissingOutputsError,
    NotebookExecutionError,
    NotebookParametersError,
    UnknownNotebookError,
    assert_clean_notebooks,
    check_parameters_cell,
    find_notebooks,
    reproduce,
)

PARAMETERS = (
    'profile = "smoke"  # str\n'
    'data_root = ""  # str\n'
    "seed = 0  # int\n"
    'figures_dir = ""  # str\n'
    'reports_dir = ""  # str\n'
)
WRITE_ALPHA = (
    "from pathlib import Path\n"
    "Path(figures_dir, 'table_alpha.csv').write_text(f'profile,seed,data_root\\n{profile},{seed},{data_root}\\n')"
)
WRITE_BETA = (
    "from pathlib import Path\n"
    "for ext in ('png', 'pdf'):\n"
    "    Path(figures_dir, f'fig_beta.{ext}').write_bytes(ext.encode() + bytes([seed]))"
)
ITEMS = (
    PaperItem("Table 1", "01_alpha", ("table_alpha",), "A table."),
    PaperItem("Figure 1", "02_beta", ("fig_beta",), "A figure."),
)


def make_notebook(path, *cells, tag_parameters=True, with_outputs=False):
    """Write a notebook whose first code cell is ``PARAMETERS`` followed by ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(PARAMETERS)
    if tag_parameters:
        first.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Test notebook"), first]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    if with_outputs:
        nb.cells[-1].execution_count = 3
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.delenv("RXLIB_DATA", raising=False)
    d = types.SimpleNamespace(nb=tmp_path / "notebooks", figs=tmp_path / "figures",
                              reps=tmp_path / "reports", data=tmp_path / "data")
    for folder in (d.nb, d.data):
        folder.mkdir()
    return d


def run(d, **kwargs):
    kwargs.setdefault("items", ITEMS)
    kwargs.setdefault("log", lambda line: None)
    return reproduce(data_root=d.data, figures_dir=d.figs, reports_dir=d.reps, kernel_name="python3",
                     notebooks_dir=d.nb, **kwargs)


def test_success_writes_reports_and_merges_manifest(dirs):
    make_notebook(dirs.nb / "01_alpha.ipynb", WRITE_ALPHA)
    make_notebook(dirs.nb / "02_beta.ipynb", WRITE_BETA)
    lines = []
    result = run(dirs, seed=3, log=lines.append)

    for stem in ("01_alpha", "02_beta"):
        assert (dirs.reps / f"{stem}.ipynb").is_file()
        assert "<html" in (dirs.reps / f"{stem}.html").read_text().lower()
    assert not list(dirs.reps.glob(".*"))  # no temporary file left behind
    table = pd.read_csv(dirs.figs / "table_alpha.csv")  # the parameters reached the kernel
    assert table.to_dict("records") == [{"profile": "smoke", "seed": 3, "data_root": str(dirs.data.resolve())}]
    executed = nbformat.read(dirs.reps / "01_alpha.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)

    on_disk = pd.read_csv(dirs.reps / "manifest.csv")
    assert list(on_disk.columns) == ["item", "notebook", "file", "bytes", "sha256"]
    assert on_disk["file"].tolist() == ["table_alpha.csv", "fig_beta.png", "fig_beta.pdf"]
    assert on_disk["notebook"].tolist() == ["01_alpha", "02_beta", "02_beta"]
    assert on_disk.loc[1, "bytes"] == 4 and len(on_disk.loc[1, "sha256"]) == 64
    pd.testing.assert_frame_equal(result.astype(str), on_disk.astype(str))
    log = pd.read_csv(dirs.reps / "run_log.csv")
    assert log["notebook"].tolist() == ["01_alpha", "02_beta"] and (log["status"] == "ok").all()
    assert (log["seconds"] > 0).all()
    assert any("02_beta ok in" in line for line in lines)
    progress = [line for line in lines if line.startswith("    01_alpha: Test notebook (cell ")]
    assert len(progress) == 1  # one line per section entered, streamed while the notebook runs

    # Re-running one notebook replaces only its rows.
    old_alpha = on_disk.iloc[0].copy()
    result = run(dirs, seed=7, only="02_beta")
    assert result["file"].tolist() == ["table_alpha.csv", "fig_beta.png", "fig_beta.pdf"]
    assert result.iloc[0].astype(str).equals(old_alpha.astype(str))
    assert result.loc[1, "sha256"] != on_disk.loc[1, "sha256"]  # seed 7 wrote other bytes
    assert len(pd.read_csv(dirs.reps / "run_log.csv")) == 2


def test_cell_headings_name_each_cells_section():
    from rxlib.reproduce import cell_headings

    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("## Figure 11: Grad-CAM\ntext"),
             nbformat.v4.new_code_cell("y = 2"), nbformat.v4.new_markdown_cell("no heading here"),
             nbformat.v4.new_code_cell("z = 3"), nbformat.v4.new_markdown_cell("# Controls")]
    assert cell_headings(cells) == ["", "Figure 11: Grad-CAM", "Figure 11: Grad-CAM", "Figure 11: Grad-CAM",
                                    "Figure 11: Grad-CAM", "Controls"]


def test_failing_cell_names_notebook_and_cell(dirs, monkeypatch):
    monkeypatch.setenv("RXLIB_WORKERS", "1")  # one notebook at a time: nothing after the failure starts
    make_notebook(dirs.nb / "01_alpha.ipynb", "x = 1", "# divide\nresult = 1 / 0")
    make_notebook(dirs.nb / "02_beta.ipynb", WRITE_BETA)
    with pytest.raises(NotebookExecutionError) as info:
        run(dirs)
    message = str(info.value)
    assert "01_alpha.ipynb" in message and "cell 3" in message
    assert "# divide" in message and "ZeroDivisionError" in message
    assert "line 2: 'result = 1 / 0'" in message
    assert (dirs.reps / "01_alpha.failed.ipynb").is_file()
    assert not (dirs.reps / "01_alpha.ipynb").exists()
    assert not (dirs.reps / "02_beta.ipynb").exists()  # the run stopped
    log = pd.read_csv(dirs.reps / "run_log.csv")
    assert log["status"].tolist() == ["failed"] and "ZeroDivisionError" in log.loc[0, "error"]


def test_notebooks_run_side_by_side_and_a_failure_stops_the_queue(dirs, monkeypatch):
    """Two workers: 01 fails while 02 runs beside it; 02 is finished and recorded, 03 never starts."""
    monkeypatch.setenv("RXLIB_WORKERS", "2")
    make_notebook(dirs.nb / "01_alpha.ipynb", "result = 1 / 0")
    make_notebook(dirs.nb / "02_beta.ipynb", "import time\ntime.sleep(3)", WRITE_BETA)
    make_notebook(dirs.nb / "03_gamma.ipynb", "x = 3")
    with pytest.raises(NotebookExecutionError, match="01_alpha.ipynb"):
        run(dirs)
    log = pd.read_csv(dirs.reps / "run_log.csv")
    assert log.set_index("notebook")["status"].to_dict() == {"01_alpha": "failed", "02_beta": "ok"}
    assert (dirs.reps / "02_beta.html").is_file() and not (dirs.reps / "03_gamma.ipynb").exists()
    assert pd.read_csv(dirs.reps / "manifest.csv")["notebook"].unique().tolist() == ["02_beta"]


def test_missing_and_stale_outputs_are_errors(dirs):
    items = (PaperItem("Table 1", "01_alpha", ("table_alpha", "table_gone", "table_old"), "Tables."),)
    make_notebook(dirs.nb / "01_alpha.ipynb", WRITE_ALPHA)
    dirs.figs.mkdir()
    old = dirs.figs / "table_old.csv"
    old.write_text("a\n1\n")
    past = time.time() - 3600
    os.utime(old, (past, past))
    with pytest.raises(MissingOutputsError) as info:
        run(dirs, items=items)
    message = str(info.value)
    assert "01_alpha" in message and "table_gone.csv" in message
    assert "table_old.csv" in message and "earlier" in message
    assert "table_alpha.csv" not in message


def test_first_code_cell_must_be_tagged_parameters(dirs):
    make_notebook(dirs.nb / "01_alpha.ipynb", WRITE_ALPHA)
    make_notebook(dirs.nb / "02_beta.ipynb", WRITE_BETA, tag_parameters=False)
    with pytest.raises(NotebookParametersError, match="02_beta.ipynb.*parameters"):
        run(dirs)
    assert not dirs.reps.exists()  # checked before anything ran
    check_parameters_cell(dirs.nb / "01_alpha.ipynb")


def test_only_selects_and_rejects_unknown_names(dirs):
    for name in ("10_gamma", "02_beta", "01_alpha"):
        make_notebook(dirs.nb / f"{name}.ipynb", "pass")
    (dirs.nb / "scratch.ipynb").write_text("{}")  # not NN_name: ignored
    assert [p.stem for p in find_notebooks(dirs.nb)] == ["01_alpha", "02_beta", "10_gamma"]
    planned = run(dirs, only=["02", "01_alpha.ipynb"], dry_run=True)
    assert planned["notebook"].unique().tolist() == ["01_alpha", "02_beta"]
    with pytest.raises(UnknownNotebookError, match="01_alpha, 02_beta, 10_gamma"):
        run(dirs, only="03_nope")


def test_dry_run_writes_nothing(dirs, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(dirs.data / "cache"))
    make_notebook(dirs.nb / "01_alpha.ipynb", WRITE_ALPHA)
    make_notebook(dirs.nb / "02_beta.ipynb", WRITE_BETA)
    before = sorted(p for p in dirs.nb.parent.rglob("*"))
    lines = []
    planned = reproduce(profile="smoke", seed=1, dry_run=True, figures_dir=dirs.figs, reports_dir=dirs.reps,
                        notebooks_dir=dirs.nb, items=ITEMS, log=lines.append)
    assert sorted(p for p in dirs.nb.parent.rglob("*")) == before
    assert planned["file"].tolist() == ["table_alpha.csv", "fig_beta.png", "fig_beta.pdf"]
    text = "\n".join(lines)
    assert "would generate" in text and "02_beta" in text and "fig_beta.pdf" in text and "seed=1" in text


def test_assert_clean_notebooks(tmp_path):
    make_notebook(tmp_path / "01_alpha.ipynb", "pass")
    assert_clean_notebooks(tmp_path)
    make_notebook(tmp_path / "02_beta.ipynb", "pass", with_outputs=True)
    with pytest.raises(DirtyNotebookError, match=r"02_beta.ipynb: cells \[2\]"):
        assert_clean_notebooks(tmp_path)


def test_project_notebooks_are_clean_tagged_and_in_the_manifest():
    assert_clean_notebooks(config.NOTEBOOKS_DIR)
    for path in find_notebooks(config.NOTEBOOKS_DIR):
        check_parameters_cell(path)
        assert path.stem in manifest.NOTEBOOKS, f"{path.name} is not listed in rxlib.manifest.NOTEBOOKS"


SHOW_A_VERDICT = (
    "from pathlib import Path\n"
    "import json\n"
    "import numpy as np\n"
    "from rxlib.explain.verdicts import make_verdict, mean_ci\n"
    "from rxlib.notebook import NotebookContext\n"
    "ctx = NotebookContext('cpu', seed, Path(data_root), Path(figures_dir), Path(reports_dir), None, False, {}, seeds)\n"
    "seen = {'seed': seed, 'seeds': seeds, 'overrides': globals().get('overrides', '')}\n"
    "Path(reports_dir, 'seen.json').write_text(json.dumps(seen))\n"
    "values = np.random.default_rng(seed).normal(seed, 0.1, 20)\n"
    "ctx.show_verdicts('03_losses', make_verdict('claim', 'paper', 's', 'q', mean_ci(values), n=20, unit='sites',\n"
    "                                            threshold=0.0, seeds=(seed,)))"
)


def test_extra_seeds_run_first_and_the_main_seed_pools_their_verdicts(dirs):
    make_notebook(dirs.nb / "03_losses.ipynb", SHOW_A_VERDICT)
    make_notebook(dirs.nb / "01_alpha.ipynb", WRITE_ALPHA)  # no verdicts: runs for the main seed only
    lines = []
    run(dirs, profile="cpu", seed=3, seeds=2, log=lines.append)

    extra = dirs.reps / "seeds" / "seed4"
    assert (extra / "03_losses.ipynb").is_file() and not (extra / "01_alpha.ipynb").exists()
    assert json.loads((extra / "seen.json").read_text()) == {"seed": 4, "seeds": 1,  # training seed: main's + 1
                                                            "overrides": '{"train.seed": 1}'}
    assert json.loads((dirs.reps / "seen.json").read_text())["seeds"] == 2
    assert (extra / "verdict_samples" / "03_losses.json").is_file()
    table = pd.read_csv(dirs.reps / "verdicts.csv", dtype={"seeds": str})
    assert table["seeds"].tolist() == ["3 4"] and table["n_seeds"].tolist() == [2] and table["n"].tolist() == [40]
    assert "two-level" in table.loc[0, "interval_method"]
    assert any(line.startswith("extra seed 4: 1 notebook(s) on ") for line in lines)
    seed_done = next(i for i, line in enumerate(lines) if line.startswith("seed 4: [1/1] 03_losses ok in"))
    main_start = lines.index("[2/2] 03_losses ...")
    assert seed_done < main_start  # the main seed's 03 waits for the extra seed's, whose samples it pools
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        run(dirs, profile="cpu", seeds=0)
    lines.clear()
    run(dirs, profile="cpu", seed=3, seeds=3, dry_run=True, log=lines.append)
    assert any(line.startswith("extra seeds 4, 5 first: 03_losses again") for line in lines)


def test_the_smoke_run_pools_three_seeds_unless_told_otherwise(dirs):
    make_notebook(dirs.nb / "03_losses.ipynb", "pass")
    lines = []
    run(dirs, profile="smoke", seed=0, dry_run=True, log=lines.append)
    assert any(line.startswith("extra seeds 1, 2 first: 03_losses again") for line in lines)
    lines.clear()
    run(dirs, profile="smoke", seed=0, seeds=1, dry_run=True, log=lines.append)
    assert not any(line.startswith("extra seed") for line in lines)
    from rxlib.explain.seeds import default_seeds

    assert default_seeds("smoke") == 3 and default_seeds("paper") == 1 and default_seeds("paper-mini") == 1


def test_a_main_seed_notebook_waits_for_every_extra_seeds_notebook_of_its_name_and_no_other(tmp_path):
    from rxlib.reproduce import _in_order, _Plan, _Run, _Task

    def run_of(seed):
        return _Run("cpu", seed, tmp_path, tmp_path, tmp_path / str(seed), (), [], print, 2)

    def task(run, name, number):
        where = run.reps / f"{name}.ipynb"
        return _Task(_Plan(where, where, where, where), {}, run, number)

    main, one, two = run_of(0), run_of(1), run_of(2)
    main.order = ["01_alpha", "02_beta", "03_losses", "08_channel_attention"]
    tasks = [task(main, "01_alpha", 1), task(main, "02_beta", 2), task(main, "03_losses", 3),
             task(main, "08_channel_attention", 4), task(one, "03_losses", 1), task(one, "08_channel_attention", 2),
             task(two, "03_losses", 1), task(two, "08_channel_attention", 2)]
    ordered = _in_order(tasks, main)
    # what waits for nothing first, then the last notebook first, the extra seeds' before the main seed's
    assert [(t.run.seed, t.plan.name) for t in ordered] == [
        (0, "01_alpha"), (0, "02_beta"), (1, "08_channel_attention"), (2, "08_channel_attention"),
        (0, "08_channel_attention"), (1, "03_losses"), (2, "03_losses"), (0, "03_losses")]
    waits = {(t.run.seed, t.plan.name): set(t.after) for t in ordered}
    assert waits[(0, "03_losses")] == {one.reps / "03_losses.ipynb", two.reps / "03_losses.ipynb"}
    assert waits[(0, "01_alpha")] == set() and waits[(1, "03_losses")] == set()


@pytest.mark.parametrize("fresh", [False, True])
def test_one_helper_runs_notebook_after_notebook_in_its_kept_kernel_unless_told_not_to(dirs, monkeypatch, fresh):
    """On the CPU a helper's kernel runs its next notebook too (rxlib.kernels), which sees none of the previous
    notebook's names; RXLIB_FRESH_KERNELS=1 gives each notebook its own kernel process."""
    monkeypatch.setenv("RXLIB_WORKERS", "1")
    if fresh:
        monkeypatch.setenv("RXLIB_FRESH_KERNELS", "1")
    record = ("import os, json\nfrom pathlib import Path\n"
              "Path(figures_dir).mkdir(parents=True, exist_ok=True)\n"
              "seen = {'pid': os.getpid(), 'leftover': 'leftover' in globals()}\nleftover = 1\n")
    make_notebook(dirs.nb / "01_alpha.ipynb", record + "Path(figures_dir, 'a.json').write_text(json.dumps(seen))")
    make_notebook(dirs.nb / "02_beta.ipynb", record + "Path(figures_dir, 'b.json').write_text(json.dumps(seen))")
    run(dirs, items=())
    a, b = (json.loads((dirs.figs / name).read_text()) for name in ("a.json", "b.json"))
    assert not a["leftover"] and not b["leftover"]  # each notebook starts with an empty namespace
    assert (a["pid"] == b["pid"]) is not fresh
    counts = [c.execution_count for c in nbformat.read(dirs.reps / "02_beta.ipynb", as_version=4).cells
              if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # numbered as in a fresh kernel


def test_a_kernel_that_dies_mid_notebook_fails_that_notebook_and_the_next_gets_a_fresh_one(dirs, tmp_path):
    """In a kept kernel too, a kernel killed mid-notebook (out of memory, a crash) is a failure naming the
    notebook, not a run that waits for it for ever; a subprocess with a time limit, so that a hang fails."""
    import subprocess
    import sys

    make_notebook(dirs.nb / "01_alpha.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom rxlib.reproduce import reproduce, NotebookExecutionError\n"
        f"d = Path({str(dirs.nb.parent)!r})\n"
        "try:\n"
        "    reproduce(data_root=d / 'data', figures_dir=d / 'figures', reports_dir=d / 'reports',\n"
        "              kernel_name='python3', notebooks_dir=d / 'notebooks', items=(), seeds=1, log=lambda l: None)\n"
        "except NotebookExecutionError as exc:\n"
        "    print('FAILED:', exc)\n")
    env = {**os.environ, "RXLIB_WORKERS": "1"}
    env.pop("RXLIB_FRESH_KERNELS", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert "FAILED: notebook 01_alpha.ipynb" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
