"""rxlib.notebook: the context's verdict display writes into the reports folder the notebook was given."""
from __future__ import annotations

import numpy as np
import pandas as pd

from rxlib.explain import verdicts as vd
from rxlib.notebook import NotebookContext


def test_show_verdicts_displays_prints_and_writes_to_the_given_reports_dir(tmp_path, capsys, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setenv("RXLIB_REPORTS", str(tmp_path / "elsewhere"))
    ctx = NotebookContext(profile="smoke", seed=0, data_root=tmp_path, figures_dir=tmp_path / "f",
                          reports_dir=tmp_path / "reports", real_root=None, synthetic=False)
    a = vd.loss_oscillation_verdict(0.1 + 0.01 * np.arange(5), 0.01 * np.arange(5), n_resamples=99)
    b = vd.randomisation_verdict("Grad-CAM", 0.1 + 0.01 * np.arange(5), n_resamples=99)
    ctx.show_verdicts("03_losses", a, [b])
    assert list(shown[0].columns) == list(vd.BRIEF_COLUMNS) and shown[0]["claim"].tolist() == [a.claim, b.claim]
    assert capsys.readouterr().out.splitlines() == [a.sentence(), b.sentence()]
    written = pd.read_csv(tmp_path / "reports" / "verdicts.csv")
    assert written["notebook"].tolist() == ["03_losses"] * 2 and not (tmp_path / "elsewhere").exists()
    ctx.show_verdicts("03_losses")  # no verdicts: the notebook's rows are replaced by none
    assert pd.read_csv(tmp_path / "reports" / "verdicts.csv").empty
