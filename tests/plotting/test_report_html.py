"""rxlib.report_html without a browser or a kernel: hand-made executed notebooks in, HTML checked as text."""
from __future__ import annotations

import base64
import copy

import nbformat
import pytest

from rxlib.report_html import latex_to_mathml, notebook_html, remote_references, strip_remote_resources

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000185d6e7bd0000000049454e44ae426082")).decode()


def _notebook(widget_state: bool = True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("Set $S_x$ and\n\n$$\\text{Attention}_i = \\frac{a_i}{\\max_j a_j}$$\n\n"
                                      "Cost in `$5` stays, as does ```$x$``` in code."),
        nbformat.v4.new_code_cell("w", outputs=[nbformat.v4.new_output(
            "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2,
                                                                                 "version_minor": 0},
                                  "text/plain": "VBox(children=(Image(...),))"})]),
        nbformat.v4.new_code_cell("m", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/latex": "$\\hat{y}_k$", "text/plain": "<IPython.core.display.Math object>"})]),
    ]
    if widget_state:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {
            "box": {"model_name": "VBoxModel", "model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0",
                    "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_layer", "IPY_MODEL_image", "IPY_MODEL_info"]}},
            "slider": {"model_name": "IntSliderModel", "state": {"value": 3, "description": "sample"}},
            "layer": {"model_name": "DropdownModel", "state": {"index": 1, "_options_labels": ["db1", "db3"],
                                                               "description": "layer"}},
            "image": {"model_name": "ImageModel", "state": {"format": "png"},
                      "buffers": [{"path": ["value"], "data": PNG, "encoding": "base64"}]},
            "info": {"model_name": "HTMLModel", "state": {"value": "<b>site</b> HEPG2-01_1_B02_1"}},
        }}}
    return nb


def test_page_has_mathml_no_raw_tex_and_no_remote_scripts():
    nb = _notebook()
    before = copy.deepcopy(nb)
    page = notebook_html(nb)
    assert nb == before  # the caller's notebook is not changed
    assert page.count("<math") == 3 and "$S_x$" not in page and "$$" not in page and "rxmathph" not in page
    assert "<mtext>Attention</mtext>" in page
    assert "$5" in page and "$x$" in page  # code is left alone
    assert remote_references(page) == [] and "require.min.js" not in page and "mathjax" not in page.lower().split("</style>")[-1]
    assert "overflow-x: auto" in page


def test_widget_view_becomes_its_stored_snapshot():
    page = notebook_html(_notebook())
    assert f"data:image/png;base64,{PNG}" in page and "HEPG2-01_1_B02_1" in page and "sample: 3" in page
    assert "layer: db3" in page
    assert "widget-view+json" not in page and "widget-state+json" not in page


def test_widget_without_state_falls_back_to_text():
    page = notebook_html(_notebook(widget_state=False))
    assert "VBox(children=" in page and "state was not" in page


def test_unreadable_tex_is_shown_literally():
    assert latex_to_mathml(r"\frac{a}{b}").startswith("<math")
    broken = latex_to_mathml(r"\frac{a")
    assert broken.startswith("<code") or broken.startswith("<math")


def test_strip_remote_resources():
    page = ('<head><script src="https://cdn.example/require.min.js"></script><link rel="stylesheet" href="//x/y.css">'
            '<script type="text/x-mathjax-config">MathJax.Hub.Config({})</script><script>var a = 1;</script></head>')
    out = strip_remote_resources(page)
    assert remote_references(out) == [] and "var a = 1" in out and "MathJax" not in out


def test_write_html_of_reproduce_uses_the_offline_exporter(tmp_path):
    from rxlib.reproduce import _write_html

    nbformat.write(_notebook(), tmp_path / "n.ipynb")
    _write_html(tmp_path / "n.ipynb", tmp_path / "n.html")
    page = (tmp_path / "n.html").read_text(encoding="utf-8")
    assert "<math" in page and remote_references(page) == []


def test_progress_bar_widget_is_shown_without_the_interactive_note():
    nb = _notebook()
    nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"] = {
        "box": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_bar"]}},
        "a": {"model_name": "HTMLModel", "state": {"value": "intensities: 100%"}},
        "bar": {"model_name": "FloatProgressModel", "state": {"value": 5.0, "max": 5.0}},
    }
    page = notebook_html(nb)
    assert '<progress max="5.0" value="5.0">' in page or '<progress value="5.0" max="5.0">' in page
    assert "intensities: 100%" in page and "Interactive widget" not in page
