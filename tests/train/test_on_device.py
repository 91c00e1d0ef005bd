"""Passes after training run on the configured device and hand the model back where it was."""
from __future__ import annotations

import numpy as np
import torch

from rxlib.explain.channels import importance_methods
from rxlib.models import build_model
from rxlib.train.loop import on_device


class _Recorder(torch.nn.Linear):
    """A module that records where it is sent (a CPU-only machine has no second device to move to)."""

    def __init__(self) -> None:
        super().__init__(2, 2)
        self.moves: list[str] = []

    def to(self, *args, **kwargs):
        self.moves.append(str(args[0]) if args else str(kwargs.get("device")))
        return self


def test_on_device_moves_there_and_back_even_on_error():
    model = _Recorder()
    with on_device(model, "meta") as device:
        assert device == torch.device("meta")
    assert model.moves == ["meta", "cpu"]
    model.moves.clear()
    try:
        with on_device(model, "cuda:1"):
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert model.moves == ["cuda:1", "cpu"]
    model.moves.clear()
    with on_device(model, None):  # None: where the model is
        pass
    assert model.moves == ["cpu", "cpu"]


def test_importance_methods_on_a_device_equal_the_model_s_own():
    torch.manual_seed(0)
    model = build_model("tiny_densenet", 5, embedding_dim=16).eval()
    images, cell_type = torch.randn(3, 6, 32, 32), torch.eye(4)[[0, 1, 2]]
    layers = {"L": "denseblock2"}
    here = importance_methods(model, images, cell_type, [0, 1, 2], cam_layers=layers)
    there = importance_methods(model, images, cell_type, [0, 1, 2], cam_layers=layers, device="cpu")
    assert here.keys() == there.keys()
    for key in here:
        assert isinstance(there[key], np.ndarray)
        np.testing.assert_allclose(there[key], here[key], rtol=1e-6, atol=1e-7)
