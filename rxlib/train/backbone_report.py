"""Tables about the backbone itself, for notebook 02: Table 2 measured and compared with the paper's,
and the layer structure of a dense block (Figure 4). Computed from the network, never typed in."""
from __future__ import annotations

import pandas as pd
from torch import nn
from torchvision.models.densenet import _DenseBlock

from rxlib.models import PAPER_TABLE2, RxNet, build_model, stage_output_sizes


def table2_comparison(arch: str = "densenet161", input_size: tuple[int, int, int] = (6, 512, 512)) -> pd.DataFrame:
    """Table 2 measured on ``arch`` beside the paper's: one row per stage with the measured
    channels/height/width, the paper's, and ``matches`` (all three equal).

    Stages the paper does not list get NaN paper columns and ``matches`` False.
    """
    measured = stage_output_sizes(arch, input_size)
    paper = pd.DataFrame(PAPER_TABLE2, columns=["stage", "channels", "height", "width"])
    table = measured.merge(paper, on="stage", how="outer", suffixes=("", "_paper"), sort=False)
    order = {s: i for i, s in enumerate(measured["stage"])}
    table = table.sort_values("stage", key=lambda s: s.map(lambda v: order.get(v, len(order)))).reset_index(drop=True)
    table["matches"] = [
        all(row[c] == row[f"{c}_paper"] for c in ("channels", "height", "width"))
        for _, row in table.iterrows()
    ]
    return table


def table2_match_note(table: pd.DataFrame) -> str:
    """How many stages of :func:`table2_comparison` match the paper's Table 2, and which differ."""
    differing = table.loc[~table["matches"].astype(bool), "stage"].tolist()
    return (f"{int(table['matches'].sum())} of {len(table)} stages match the paper's Table 2; "
            f"differing: {', '.join(differing) if differing else 'none'}")


def dense_block_structure(model: RxNet | nn.Module, block: str = "denseblock1") -> pd.DataFrame:
    """The layers of one dense block, read from the module: per layer its input channels (block input
    plus all earlier layers' outputs), bottleneck width (the 1x1 convolution's outputs), growth (the
    3x3 convolution's outputs) and the channels after concatenation.

    Raises:
        ValueError: ``block`` is not a dense block of the model (names the stages it has).
    """
    stages = model.stages() if isinstance(model, RxNet) else dict(model.named_children())
    module = stages.get(block)
    if not isinstance(module, _DenseBlock):
        raise ValueError(f"{block!r} is not a dense block; stages: {list(stages)}")
    rows = []
    for name, layer in module.named_children():
        rows.append({"layer": name, "in_channels": layer.conv1.in_channels,
                     "bottleneck_channels": layer.conv1.out_channels, "growth": layer.conv2.out_channels,
                     "out_channels": layer.conv1.in_channels + layer.conv2.out_channels})
    return pd.DataFrame(rows)


def dense_block_of(arch: str, block: str = "denseblock1") -> pd.DataFrame:
    """:func:`dense_block_structure` of a freshly built ``arch`` (weights do not matter for structure)."""
    return dense_block_structure(build_model(arch, 2, memory_efficient=False), block)
