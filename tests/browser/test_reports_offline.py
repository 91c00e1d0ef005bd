"""Every HTML report renders fully offline in headless Chromium (Debian's, driven by Playwright).

Reports are produced in a fixture: the HTML of all eight notebooks of the suite's smoke run when
``RXLIB_SMOKE_REPORTS`` names the folder it kept them in (CI sets it), otherwise notebook 01 run by
``rxlib reproduce`` in the smoke profile here; and a
small synthetic notebook with markdown math (inline and display), a figure, a wide DataFrame, a
``text/latex`` output and an ipywidgets widget holding a PNG. Each HTML is opened from ``file://`` with
every non-file request aborted; the test fails on any failed request, any image that did not load
(``naturalWidth`` 0), raw TeX (``$...$``/``$$...$$``) left in the rendered text, a remote script or
stylesheet left in the page, or a widget without its static picture.

Marked ``browser`` (deselected by default): ``python -m pytest -m browser tests/browser/test_reports_offline.py``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser_setup import CHROMIUM, CHROMIUM_ARGS, EXPLORER_CELL, require_chromium

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE_S = 30

pytestmark = pytest.mark.browser

#: TeX left as text: display math, or inline math holding a TeX character (\ _ ^ { }).
RAW_TEX = re.compile(r"\$\$[\s\S]+?\$\$|\$[^$\n]*[\\_^{}][^$\n]*\$")

MARKDOWN_MATH = r"""# Synthetic report

Inline math: the class set $S_x$ holds the classes with $x$ samples, and \(\lambda = 0.5\).

$$\text{Attention}_i = \frac{\sum_{h,w} A^{c}_{i,h,w}}{\max_j \sum_{h,w} A^{c}_{j,h,w}}$$

\begin{equation}
\mathcal{L} = -\log \frac{e^{s \cos(\theta_y + m)}}{e^{s \cos(\theta_y + m)} + \sum_{j \ne y} e^{s \cos \theta_j}}
\end{equation}

Code keeps its dollars: `echo $HOME`.
"""

CODE_FIGURE = """\
%matplotlib inline
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot([0, 1, 2], [0, 1, 4], label="$x^2$")
ax.legend()
plt.show()
"""

CODE_TABLE = """\
import numpy as np
import pandas as pd
pd.set_option("display.max_columns", None)
pd.DataFrame(np.arange(75).reshape(3, 25), columns=[f"column_{i:02d}" for i in range(25)])
"""

CODE_LATEX = """\
from IPython.display import Math, display
display(Math(r"\\hat{y} = \\operatorname{argmax}_k\\, p_k"))
"""

CODE_WIDGET = """\
import io
import ipywidgets as widgets
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
figure = Figure(figsize=(2, 2))
figure.add_subplot().imshow([[0, 1], [1, 0]])
buffer = io.BytesIO()
figure.savefig(buffer, format="png")
widgets.VBox([widgets.IntSlider(value=3, description="sample"), widgets.Image(value=buffer.getvalue(), format="png"),
              widgets.HTML("<b>site</b> HEPG2-01_1_B02_1")])
"""




#: A notebook-02..08-style cell: save a package figure, end with ``fig``; it must be shown once.
CODE_FIGURE_ONCE = """\
import tempfile
from rxlib.plotting import save_figure
from rxlib.plotting.explain import plot_channel_attention
fig = plot_channel_attention({"eq. 15": [1.0, 0.5, 0.2], "planted": [0.0, 0.0, 1.0]}, title="Figure 12")
save_figure(fig, "fig12_channel_attention", out_dir=tempfile.mkdtemp())
fig
"""


def synthetic_notebook():
    """An unexecuted notebook with markdown math, a figure, a wide DataFrame, a latex output and a widget."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(MARKDOWN_MATH), nbformat.v4.new_code_cell(CODE_FIGURE),
                nbformat.v4.new_code_cell(CODE_TABLE), nbformat.v4.new_code_cell(CODE_LATEX),
                nbformat.v4.new_code_cell(CODE_WIDGET), nbformat.v4.new_code_cell(CODE_FIGURE_ONCE)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


def _requirements() -> None:
    require_chromium()


@pytest.fixture(scope="module")
def reports(tmp_path_factory, explorer_root) -> list[Path]:
    """HTML reports of notebook 01 (smoke), of the synthetic notebook and of the Grad-CAM explorer on a
    tiny synthetic RxRx1 (``explorer_root`` of tests/browser/conftest.py)."""
    _requirements()
    import nbformat
    from nbclient import NotebookClient

    from rxlib.report_html import write_notebook_html

    folder = tmp_path_factory.mktemp("reports")
    explorer = nbformat.v4.new_notebook()
    explorer.cells = [nbformat.v4.new_code_cell(EXPLORER_CELL.format(root=str(explorer_root)))]
    explorer.metadata["kernelspec"] = synthetic_notebook().metadata["kernelspec"]
    for name, executed in (("synthetic", synthetic_notebook()), ("explorer", explorer)):
        NotebookClient(executed, kernel_name="python3", timeout=300,
                       resources={"metadata": {"path": str(folder)}}).execute()
        nbformat.write(executed, folder / f"{name}.ipynb")
        write_notebook_html(folder / f"{name}.ipynb", folder / f"{name}.html")

    kept = _kept_smoke_reports()
    if kept:
        for html in kept:
            shutil.copy2(html, folder / html.name)
    else:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
        run = subprocess.run([sys.executable, "-m", "rxlib.cli", "reproduce", "--profile", "smoke", "--only",
                              "01_dataset_stats", "--figures-dir", str(folder / "figures"), "--reports-dir",
                              str(folder)], env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    pages = sorted(folder.glob("*.html"))
    assert {p.name for p in pages} >= {"synthetic.html", "explorer.html", "01_dataset_stats.html"}
    return pages


def _kept_smoke_reports() -> list[Path]:
    """The eight notebook reports the suite's smoke run kept in ``$RXLIB_SMOKE_REPORTS`` ([] if not there)."""
    folder = os.environ.get("RXLIB_SMOKE_REPORTS")
    found = sorted(Path(folder).glob("[0-9][0-9]_*.html")) if folder else []
    return found if len(found) == len(list((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))) else []


#: Reports photographed into ``$RXLIB_SCREENSHOTS`` (for a closing note; nothing without the variable).
SCREENSHOT_REPORTS = ("01_dataset_stats.html", "07_gradcam.html")


def _screenshot(page, page_path: Path) -> None:
    folder = os.environ.get("RXLIB_SCREENSHOTS")
    if folder and page_path.name in SCREENSHOT_REPORTS:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"report_{page_path.stem}.png"))


def _check_page(browser, page_path: Path) -> dict:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_S * 1000)
    failed: list[str] = []
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:", "about:")):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda req: failed.append(f"{req.url} ({req.failure})"))
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_load_state("networkidle")
        broken = page.evaluate("""() => Array.from(document.images)
            .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => (img.src || '').slice(0, 80))""")
        n_images = page.evaluate("() => document.images.length")
        text = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.jp-MarkdownOutput, .jp-OutputArea-output')).map(e => e.innerText).join('\\n')""")
        n_math = page.evaluate("() => document.querySelectorAll('math').length")
        math_width = page.evaluate("""() => Array.from(document.querySelectorAll('math'))
            .map(m => m.getBoundingClientRect().width)""")
        overflowing = page.evaluate("""() => document.documentElement.scrollWidth > window.innerWidth + 1""")
        html_text = page_path.read_text(encoding="utf-8")
        _screenshot(page, page_path)
    finally:
        context.close()
    return {"failed": failed, "blocked": blocked, "broken": broken, "n_images": n_images,
            "raw_tex": RAW_TEX.findall(text), "n_math": n_math, "math_width": math_width,
            "overflowing": overflowing, "html": html_text}


@pytest.fixture(scope="module")
def checked(reports) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            return {p.name: _check_page(browser, p) for p in reports}
        finally:
            browser.close()


def test_every_report_renders_offline(checked):
    from rxlib.report_html import remote_references

    for name, result in checked.items():
        assert result["failed"] == [], f"{name}: failed requests {result['failed']}"
        assert result["blocked"] == [], f"{name}: requests to the network {result['blocked']}"
        assert result["broken"] == [], f"{name}: images that did not load {result['broken']}"
        assert result["raw_tex"] == [], f"{name}: TeX left as text {result['raw_tex']}"
        assert remote_references(result["html"]) == [], f"{name}: remote scripts or stylesheets left"
        assert not result["overflowing"], f"{name}: the page is wider than the window (a table or image overflows)"


def test_synthetic_report_shows_math_figure_table_and_widget(checked):
    result = checked["synthetic.html"]
    assert result["n_math"] >= 5 and all(w > 0 for w in result["math_width"])  # MathML drawn, not empty
    # figure + widget snapshot image (+ the legend's math is inside the PNG)
    assert result["n_images"] >= 2
    assert "column_24" in result["html"] and "3 rows" not in result["html"].split("column_24")[-1][:2000]
    assert "rx-widget-snapshot" in result["html"] and "HEPG2-01_1_B02_1" in result["html"]
    assert "echo $HOME" in result["html"]


def test_every_notebook_report_is_checked_when_the_suite_kept_them(checked):
    """With ``RXLIB_SMOKE_REPORTS`` (CI) all eight notebooks' reports are among those checked above."""
    if not _kept_smoke_reports():
        pytest.skip("RXLIB_SMOKE_REPORTS holds no smoke reports: only notebook 01's report is checked")
    notebooks = {p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert {f"{n}.html" for n in notebooks} <= set(checked)
    assert all(checked[f"{n}.html"]["n_images"] >= 1 for n in notebooks)


def test_notebook01_report_has_its_figures(checked):
    result = checked["01_dataset_stats.html"]
    assert result["n_images"] >= 5


def test_explorer_report_shows_its_first_picture(checked):
    """The explorer's static snapshot: the PNG it drew when the cell ran, loaded (checked above), and the
    values of its controls."""
    result = checked["explorer.html"]
    assert result["n_images"] >= 1 and result["broken"] == []
    assert "rx-widget-snapshot" in result["html"] and "data:image/png;base64," in result["html"]


def test_a_saved_figure_ending_a_cell_is_shown_once(reports):
    import nbformat

    executed = nbformat.read(reports[0].parent / "synthetic.ipynb", as_version=4)
    last = executed.cells[-1]
    assert sum("image/png" in out.get("data", {}) for out in last.outputs) == 1
