"""Tests of the paper-item table, and that the figure writers produce exactly the files it lists."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rxlib import manifest  # noqa: E402
from rxlib.manifest import PAPER_ITEMS, PaperItem  # noqa: E402
from rxlib.plotting import save_figure, save_table  # noqa: E402


def test_every_notebook_has_items_and_every_item_a_notebook():
    for notebook in manifest.NOTEBOOKS:
        assert manifest.items_for(notebook), notebook
        assert manifest.items_for(f"notebooks/{notebook}.ipynb") == manifest.items_for(notebook)
    assert {it.notebook for it in PAPER_ITEMS} == set(manifest.NOTEBOOKS)
    assert manifest.items_for("99_unknown") == ()


def test_names_are_unique():
    items = [it.item for it in PAPER_ITEMS]
    assert len(items) == len(set(items))
    stems = manifest.all_stems()
    assert len(stems) == len(set(stems))


def test_paper_figures_and_tables_covered():
    items = {it.item for it in PAPER_ITEMS}
    assert {f"Figure {n}" for n in range(1, 13)} <= items
    assert {"Table 1", "Table 2"} <= items


def test_notebook_01_stems():
    assert manifest.all_stems(manifest.items_for("01_dataset_stats")) == [
        "fig01_channels", "fig01_rgb_composite", "fig02_class_distribution", "table1_class_sets",
        "fig03_channel_mean_distribution", "plate_layout", "realism_intensity", "realism_nuclei_per_field",
    ]


def test_expected_files(tmp_path):
    files = manifest.expected_files("01_dataset_stats", tmp_path)
    names = [p.name for p in files]
    assert names[:2] == ["fig01_channels.png", "fig01_channels.pdf"]
    assert "table1_class_sets.csv" in names and "table1_class_sets.png" not in names
    assert all(p.parent == tmp_path for p in files)


def test_markdown_table_mentions_each_item():
    table = manifest.markdown_table()
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(PAPER_ITEMS)
    for it in PAPER_ITEMS:
        assert it.item in table and it.notebook in table
        assert all(name in table for name in it.files)
    assert all(line.count("|") == 5 for line in lines)


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", "../x", "x.png", ".hidden", "_x", "a b"])
def test_bad_names_rejected(bad, tmp_path):
    with pytest.raises(ValueError, match="invalid output name"):
        manifest.check_stem(bad)
    with pytest.raises(ValueError, match="invalid output name"):
        PaperItem("Figure 99", "01_x", (bad,), "bad")
    with pytest.raises(ValueError, match="invalid output name"):
        save_table(pd.DataFrame({"a": [1]}), bad, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_save_figure_and_table_write_the_manifest_files(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    out = tmp_path / "new" / "figures"
    written = save_figure(fig, "fig_test", out_dir=out)
    assert [p.name for p in written] == list(manifest.output_files("fig_test"))
    assert written[0].read_bytes()[:4] == b"\x89PNG" and written[1].read_bytes()[:4] == b"%PDF"
    first_pdf = written[1].read_bytes()
    save_figure(fig, "fig_test", out_dir=out)
    assert written[1].read_bytes() == first_pdf  # no timestamp in the PDF: same bytes again
    assert not re.search(rb"CreationDate", first_pdf)
    with pytest.raises(ValueError, match="unsupported format"):
        save_figure(fig, "fig_test", out_dir=out, formats=("nope",))
    plt.close(fig)

    frame = pd.DataFrame({"class_set": ["S_1", "S_2"], "n_classes": [3, 4]})
    path = save_table(frame, "table_test", out_dir=out)
    assert path.name == manifest.output_files("table_test")[0]
    pd.testing.assert_frame_equal(pd.read_csv(path), frame)
    assert sorted(p.name for p in out.iterdir()) == ["fig_test.pdf", "fig_test.png", "table_test.csv"]


def test_save_figure_keeps_the_layout_its_first_file_was_drawn_with(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), layout="constrained")
    axes = fig.subplots(1, 2)
    image = axes[0].imshow([[0, 1], [1, 0]])
    axes[1].set_title("a title that constrained layout makes room for")
    fig.colorbar(image, ax=axes)
    save_figure(fig, "fig_test", out_dir=tmp_path)
    drawn = [ax.get_position().bounds for ax in fig.axes]
    fig.canvas.draw()  # e.g. the notebook's own display: no new solve, the same positions
    assert [ax.get_position().bounds for ax in fig.axes] == drawn
    assert type(fig.get_layout_engine()).__name__ != "ConstrainedLayoutEngine"


def test_save_defaults_to_figures_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_FIGURES", str(tmp_path))
    assert save_table(pd.DataFrame({"a": [1]}), "table_x") == tmp_path / "table_x.csv"
