"""``rxlib reproduce`` killed with SIGKILL while a notebook runs, then run again with ``--only``: the
killed notebook never appears as executed (no executed copy, no manifest rows), and the rerun
finishes it completely."""
from __future__ import annotations

import json

import nbformat
import pandas as pd

from killing import child_env, kill_when, start

PARAMETERS = ('profile = "smoke"  # str\ndata_root = ""  # str\nseed = 0  # int\n'
              'figures_dir = ""  # str\nreports_dir = ""  # str\n')
ALPHA = "from pathlib import Path\nPath(figures_dir, 'table_alpha.csv').write_text('a,b\\n1,2\\n')"
# writes its figure, then (first run only) waits long enough to be killed mid-notebook
BETA = ("import os, time\nfrom pathlib import Path\n"
        "Path(figures_dir, 'fig_beta.png').write_bytes(b'png')\nPath(figures_dir, 'fig_beta.pdf').write_bytes(b'pdf')\n"
        "time.sleep(float(os.environ.get('BETA_SLEEP', '0')))")
BETA_AFTER = "print('after the sleep')"

RUNNER = """
import sys
from pathlib import Path
from rxlib.manifest import PaperItem
from rxlib.reproduce import reproduce
root = Path(sys.argv[1])
items = (PaperItem("Table 1", "01_alpha", ("table_alpha",), "A table."),
         PaperItem("Figure 1", "02_beta", ("fig_beta",), "A figure."))
only = sys.argv[2:] or None
reproduce(data_root=root / "data", figures_dir=root / "figures", reports_dir=root / "reports", kernel_name="python3",
          notebooks_dir=root / "notebooks", items=items, only=only)
"""


def _notebook(path, *cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(PARAMETERS)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_killed_reproduce_reruns_cleanly(tmp_path, kill_rng):
    for name in ("notebooks", "data"):
        (tmp_path / name).mkdir()
    _notebook(tmp_path / "notebooks" / "01_alpha.ipynb", ALPHA)
    _notebook(tmp_path / "notebooks" / "02_beta.ipynb", BETA, BETA_AFTER)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    reports = tmp_path / "reports"

    # one notebook at a time, so that 01 is recorded before 02 starts and the kill lands inside 02
    proc = start([str(runner), str(tmp_path)], child_env(tmp_path, BETA_SLEEP="60", RXLIB_WORKERS="1"),
                 tmp_path / "log.txt")
    killed = kill_when(proc, lambda: (tmp_path / "figures" / "fig_beta.pdf").exists(), kill_rng.uniform(0.0, 1.0),
                       timeout_s=120)
    assert killed, (tmp_path / "log.txt").read_text()
    # killed inside 02_beta: 01 is recorded, 02 is not taken for finished
    assert (reports / "01_alpha.ipynb").is_file()
    assert not (reports / "02_beta.ipynb").exists() and not (reports / "02_beta.html").exists()
    manifest = pd.read_csv(reports / "manifest.csv")
    assert set(manifest["notebook"]) == {"01_alpha"}

    done = start([str(runner), str(tmp_path), "02_beta"], child_env(tmp_path, BETA_SLEEP="0"), tmp_path / "log.txt")
    assert done.wait(timeout=120) == 0, (tmp_path / "log.txt").read_text()
    manifest = pd.read_csv(reports / "manifest.csv")
    assert sorted(manifest["file"]) == ["fig_beta.pdf", "fig_beta.png", "table_alpha.csv"]
    executed = nbformat.read(reports / "02_beta.ipynb", as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)  # every cell ran, the last one included
    assert "after the sleep" in json.dumps(code[-1].outputs)
    assert (reports / "02_beta.html").is_file()
    assert not list(reports.glob(".*running*")), "the killed run's temporary copy was left behind"
