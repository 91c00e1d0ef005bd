"""The decoded-site cache: same items as the PNGs, atomic, invalidated when an image or the metadata change."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rxlib.data import RxRx1Dataset, load_site_stem
from rxlib.data.cache import SiteCache
from rxlib.io import CorruptImageError, write_png


def test_cached_items_equal_png_items(tiny_root, tmp_path):
    plain = RxRx1Dataset(tiny_root, normalize="image")
    cached = RxRx1Dataset(tiny_root, normalize="image", cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("sites-*.npy"))) == 1
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_changed_image_or_metadata_rebuilds(tiny_root, tmp_path):
    table = RxRx1Dataset(tiny_root).table
    first = SiteCache.build(tiny_root, table["image_stem"], folder=tmp_path)
    again = SiteCache.build(tiny_root, table["image_stem"], folder=tmp_path)
    assert again.path == first.path
    stem = table["image_stem"][0]
    path = tiny_root / f"{stem}_w1.png"
    write_png(path, np.zeros((16, 16), np.uint8))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    changed = SiteCache.build(tiny_root, table["image_stem"], folder=tmp_path)
    assert changed.path != first.path
    assert np.array_equal(changed[0], load_site_stem(tiny_root, stem)) and not changed[0][0].any()
    (tiny_root / "metadata.csv").write_text((tiny_root / "metadata.csv").read_text() + "\n")
    assert SiteCache.build(tiny_root, table["image_stem"], folder=tmp_path).path != changed.path


def test_bad_image_leaves_no_cache_file(tiny_root, tmp_path):
    table = RxRx1Dataset(tiny_root).table
    bad = tiny_root / f"{table['image_stem'][3]}_w2.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CorruptImageError, match=str(bad)):
        SiteCache.build(tiny_root, table["image_stem"], folder=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())
