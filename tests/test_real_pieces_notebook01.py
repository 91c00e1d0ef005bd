"""Notebook 01 runs in full on the real RxRx1 pieces: the Kaggle 2023 folder (metadata and 180 images of
negative-control wells) and the Kaggle 2019 folder (metadata only; its figures of images come from the
2023 pieces, and the notebook says so)."""
from __future__ import annotations

import json

import pytest

from rxlib import manifest
from rxlib.reproduce import reproduce

pytestmark = pytest.mark.e2e  # whole notebook runs: run by CI beside the suite (-m e2e)


def _stdout(notebook) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []) if o.get("name") == "stdout")


@pytest.mark.parametrize("release", ["kaggle-2023", "kaggle-2019"])
def test_notebook_01_runs_on_the_real_pieces(release, real_rxrx1, tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    figures, reports = tmp_path / "figures", tmp_path / "reports"
    reproduce(profile="smoke", data_root=real_rxrx1 / release, only="01_dataset_stats", figures_dir=figures,
              reports_dir=reports, log=lambda *_: None)
    assert all(p.is_file() and p.stat().st_size > 0 for p in manifest.expected_files("01_dataset_stats", figures))
    out = _stdout(reports / "01_dataset_stats.ipynb")
    assert "Figure 1 shows HEPG2-01_1_B02_1" in out
    assert "np.int64" not in out
    if release == "kaggle-2019":
        assert "holds no images: Figure 3 is drawn from the real pieces" in out
    table1 = (figures / "table1_class_sets.csv").read_text()
    assert "33,1069" in table1 or "33,1067" in table1  # the 2019 release has two wells fewer
