"""What the browser tests share: Debian's Chromium, its flags, the check that it can be driven, and the
notebook cell that builds the Grad-CAM explorer on a tiny synthetic RxRx1."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("RXLIB_CHROMIUM", "/usr/bin/chromium"))
#: Chromium flags: headless, and no background traffic (the closed network would refuse it, noisily).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: The explorer cell (``.format(root=...)``): a tiny untrained network on the sites of ``root``.
EXPLORER_CELL = """\
import torch
from rxlib.data import RxRx1Dataset
from rxlib.explain.explorer import gradcam_explorer
from rxlib.models import build_model

torch.set_num_threads(1)
torch.manual_seed(0)
dataset = RxRx1Dataset({root!r})
model = build_model("tiny_densenet", int(dataset.table["label"].max()) + 1, embedding_dim=32)
gradcam_explorer(model, dataset, layers=["denseblock1", "denseblock3"], class_id=3)
"""


def require_chromium() -> None:
    """Skip unless Debian's Chromium and the playwright package are there (never 'playwright install')."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (Debian's chromium package) "
                    "or set RXLIB_CHROMIUM")
    pytest.importorskip("playwright.sync_api", reason="pip package 'playwright' is needed to drive Chromium "
                        "(never run 'playwright install'; the test uses the system Chromium)")
