"""Table 2: DenseNet-161 stage output sizes on a 6 x 512 x 512 input."""
from __future__ import annotations

import pytest
import torch

from rxlib.models import PAPER_TABLE2, build_model, paper_table2, stage_output_sizes


def test_densenet161_matches_paper_table2():
    table = stage_output_sizes("densenet161", (6, 512, 512))
    assert list(table.columns) == ["stage", "channels", "height", "width", "spec"]
    got = [tuple(row) for row in table[["stage", "channels", "height", "width"]].itertuples(index=False)]
    assert got == list(PAPER_TABLE2)
    assert table.loc[0, "spec"] == "7x7 Conv, stride = 2"
    assert table.loc[8, "spec"].endswith("x 24")
    assert paper_table2().shape == (9, 4)


def test_model_instance_is_left_unchanged():
    model = build_model("tiny_densenet", 4, embedding_dim=8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    table = stage_output_sizes(model, (6, 64, 64))
    assert model.training
    assert table["height"].tolist() == [32, 16, 16, 8, 8, 4, 4, 2, 2]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
        assert v.device.type == "cpu"


@pytest.mark.slow
def test_real_forward_agrees_with_meta_forward():
    # the meta-device shapes equal those of a real CPU forward (6 x 512 x 512, no grad, eval mode)
    torch.manual_seed(0)
    model = build_model("densenet161", 1139)
    model.features.to("cpu")
    real = model.features.eval()
    shapes = {}
    handles = [getattr(real, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
               for name, *_ in PAPER_TABLE2]
    with torch.no_grad():
        real(torch.zeros(1, 6, 512, 512))
    for h in handles:
        h.remove()
    assert [(n, *shapes[n][1:]) for n, *_ in PAPER_TABLE2] == list(PAPER_TABLE2)
