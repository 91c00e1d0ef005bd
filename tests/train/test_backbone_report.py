"""Table 2 comparison and the dense block structure (Figure 4)."""
from __future__ import annotations

import pytest

from rxlib.train.backbone_report import dense_block_of, table2_comparison


def test_table2_matches_the_paper_for_densenet161():
    table = table2_comparison("densenet161")
    assert len(table) == 9 and table["matches"].all()


def test_table2_flags_mismatches():
    table = table2_comparison("densenet161", (6, 256, 256))
    assert not table["matches"].any()


def test_dense_block_channels_grow_by_the_growth_rate():
    block = dense_block_of("densenet161", "denseblock1")
    assert len(block) == 6 and (block["growth"] == 48).all()
    assert block["in_channels"].iloc[0] == 96 and block["out_channels"].iloc[-1] == 384
    assert (block["in_channels"].iloc[1:].to_numpy() == block["out_channels"].iloc[:-1].to_numpy()).all()


def test_not_a_dense_block():
    with pytest.raises(ValueError, match="not a dense block"):
        dense_block_of("tiny_densenet", "transition1")


def test_table2_match_note_names_the_differing_stages():
    import pandas as pd

    from rxlib.train.backbone_report import table2_match_note

    table = pd.DataFrame({"stage": ["conv0", "denseblock1", "classifier"], "matches": [True, False, False]})
    assert table2_match_note(table) == "1 of 3 stages match the paper's Table 2; differing: denseblock1, classifier"
    assert table2_match_note(table.assign(matches=True)).endswith("3 of 3 stages match the paper's Table 2; differing: none")
