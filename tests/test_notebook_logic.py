"""The notebooks hold calls and displays; logic lives in rxlib (scripts/notebook_logic.py measures it)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rxlib import config

_spec = importlib.util.spec_from_file_location("notebook_logic", Path(__file__).parents[1] / "scripts" / "notebook_logic.py")
notebook_logic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_logic)

#: The share of logic lines the notebooks may hold at most: 28 % when this test was written, 0 % since
#: every loop, branch and verdict moved into rxlib (issue 13 point 5); 1 % leaves room for nothing more.
MAX_LOGIC_SHARE = 0.01


def _write(tmp_path: Path, *cells: str) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_calls_and_displays_are_not_logic_and_loops_conditions_and_arithmetic_are(tmp_path):
    path = _write(tmp_path,
                  "%matplotlib inline\nimport numpy as np\nfrom rxlib.notebook import setup\nctx = setup('smoke')",
                  "runs = ctx.models('04')\ndisplay(runs)\nfig\nprint(f'{ctx.seed}: {runs.shape[0]:.1f}')",
                  "for k in runs:\n    print(k)\n# a comment\n\nx = len(runs) + 1",
                  "best = [r for r in runs if r]\nif best:\n    display(best)\nctx.save(fig, 'a')")
    assert notebook_logic.notebook_lines(path) == (6, 14)


def test_a_cell_that_is_not_python_names_the_notebook_and_cell(tmp_path):
    path = _write(tmp_path, "x = 1", "def broken(:\n    pass")
    with pytest.raises(SyntaxError, match=r"nb.ipynb: cell 1"):
        notebook_logic.notebook_lines(path)


def test_the_notebooks_logic_share_does_not_grow():
    paths = sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    share, per = notebook_logic.logic_share(paths)
    assert len(per) == 8
    assert share <= MAX_LOGIC_SHARE, f"{share:.0%} of notebook code lines are logic: move it into rxlib ({per})"
