"""The site store and the one dataset over it: every storage gives the same items, the store's
statistics are those of the PNGs, a killed prepare resumes to the same bytes, bad images are named."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rxlib.data.store as store_module
from rxlib.data import RxRx1Dataset, load_site_stem, read_metadata
from rxlib.data.splits import held_out_split, split_sites
from rxlib.data.stats import image_intensities, normalisation_stats
from rxlib.data.store import SiteStore, prepare_store
from rxlib.io import CorruptImageError, MissingImageError, write_png

REPO = Path(__file__).resolve().parents[2]


def _items_equal(a: dict, b: dict) -> bool:
    return (torch.equal(a["image"], b["image"]) and torch.equal(a["cell_type"], b["cell_type"])
            and torch.equal(a["label"], b["label"]) and a["index"] == b["index"])


def test_store_holds_the_decoded_sites(tiny_root, tmp_path):
    table = read_metadata(tiny_root)
    store = prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False, chunk_sites=5)
    assert store.shape == (12, 6, 16, 16) and len(store) == 12
    assert store.folder.parent == tmp_path and (store.folder / "complete.json").is_file()
    assert not (store.folder / "chunks").exists()
    for row, stem in enumerate(table["image_stem"]):
        assert np.array_equal(store.read(row), load_site_stem(tiny_root, stem))
    assert store.rows(table["image_stem"][[3, 1]]).tolist() == [3, 1]
    assert np.array_equal(store.read_many([3, 1]), np.stack([store.read(3), store.read(1)]))
    with pytest.raises(KeyError, match="not in the store"):
        store.rows(["images/nowhere"])
    with pytest.raises(IndexError, match="out of range"):
        store.read(12)
    # a second call opens the same store; more processes give the same bytes
    assert prepare_store(tiny_root, table, folder=tmp_path, progress=False).folder == store.folder
    parallel = prepare_store(tiny_root, table, workers=2, folder=tmp_path / "parallel", progress=False, chunk_sites=3)
    assert (parallel.folder / "sites.u8").read_bytes() == (store.folder / "sites.u8").read_bytes()


def test_default_folder_is_under_the_cache(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    store = prepare_store(tiny_root, read_metadata(tiny_root), workers=1, progress=False)
    assert store.folder.parent == tmp_path / "cache" / "store"


@pytest.mark.parametrize("by", ["experiment", "plate"])
def test_store_stats_equal_the_stats_of_the_pngs(tiny_root, tmp_path, by):
    table = read_metadata(tiny_root)
    store = prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False)
    intensities, problems = image_intensities(tiny_root, table, progress=False)
    assert problems.empty
    from_pngs = normalisation_stats(intensities, by)
    stored = store.stats(by)
    assert stored["group"].tolist() == from_pngs["group"].tolist()
    assert stored["channel"].tolist() == from_pngs["channel"].tolist()
    assert np.array_equal(stored["mean"].to_numpy(), from_pngs["mean"].to_numpy())  # bit for bit
    assert np.array_equal(stored["std"].to_numpy(), from_pngs["std"].to_numpy())
    assert stored["n_images"].tolist() == from_pngs["n_images"].tolist()
    # and they are the pooled moments of all pixels of each group (float64)
    keys = table["experiment"] if by == "experiment" else table["experiment"] + "_" + table["plate"].astype(str)
    for group, frame in stored.groupby("group"):
        pixels = np.stack([load_site_stem(tiny_root, s) for s in table["image_stem"][keys == group]]).astype(np.float64)
        np.testing.assert_allclose(frame["mean"], pixels.mean(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(frame["std"], pixels.std(axis=(0, 2, 3)), rtol=1e-9)
    # statistics of a subset of rows: those rows only
    part = store.stats(by, rows=[0, 1])
    assert part["n_images"].eq(2).all()


@pytest.mark.parametrize("normalize", ["none", "image", "experiment", "plate"])
def test_every_storage_gives_the_same_items(tiny_root, tmp_path, monkeypatch, normalize):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    table = read_metadata(tiny_root)
    stats = None
    if normalize in ("experiment", "plate"):
        stats = normalisation_stats(image_intensities(tiny_root, table, progress=False)[0], normalize)
    datasets = {storage: RxRx1Dataset(tiny_root, table, normalize=normalize, stats=stats, storage=storage, workers=1)
                for storage in ("png", "store", "memory")}
    assert datasets["memory"]._array is not None and datasets["store"]._array is None
    for i in range(len(table)):
        png = datasets["png"][i]
        assert _items_equal(png, datasets["store"][i]) and _items_equal(png, datasets["memory"][i])
    if stats is not None:  # without a stats table, store and memory use the store's: the same numbers
        for storage in ("store", "memory"):
            own = RxRx1Dataset(tiny_root, table, normalize=normalize, storage=storage, workers=1)
            assert all(_items_equal(datasets["png"][i], own[i]) for i in range(len(table)))


def test_subset_and_raw_images_share_storage_and_stats(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    for storage in ("png", "store", "memory"):
        kw = {} if storage != "png" else {"stats": normalisation_stats(
            image_intensities(tiny_root, read_metadata(tiny_root), progress=False)[0], "experiment")}
        ds = RxRx1Dataset(tiny_root, normalize="experiment", storage=storage, workers=1, **kw)
        part = ds.subset([5, 2])
        assert part.table["site_id"].tolist() == ds.table["site_id"].iloc[[5, 2]].tolist()
        assert torch.equal(part[0]["image"], ds[5]["image"]) and part[1]["index"] == 1
        assert part.stats is ds.stats and part.store is ds.store
        if storage == "memory":
            assert part._array is ds._array  # no copy of the images
        raw = ds.raw_images([5, 2])
        assert raw.dtype == np.uint8 and raw.shape == (2, 6, 16, 16)
        assert np.array_equal(raw[0], load_site_stem(tiny_root, ds.table["image_stem"][5]))
        with pytest.raises(IndexError):
            ds.subset([len(ds)])
    with pytest.raises(ValueError, match="storage='disk'"):
        RxRx1Dataset(tiny_root, storage="disk")


def test_held_out_split_is_the_same_in_every_storage(tiny_root, tmp_path, monkeypatch):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    splits = {s: held_out_split(tiny_root, storage=s, augment=False) for s in ("png", "store", "memory")}
    for name in ("train", "val", "unlabelled"):
        sets = [getattr(split, name) for split in splits.values()]
        assert all(len(s) == len(sets[0]) for s in sets)
        for i in range(len(sets[0])):
            assert _items_equal(sets[0][i], sets[1][i]) and _items_equal(sets[0][i], sets[2][i])
    sites = split_sites(tiny_root, "test")
    assert sites.storage == "store" and sites._array is None  # lazy
    assert all(_items_equal(sites[i], splits["png"].val[i]) for i in range(len(sites)))


def test_missing_or_corrupt_image_is_named_and_no_store_is_complete(tiny_root, tmp_path):
    table = read_metadata(tiny_root)
    bad = tiny_root / f"{table['image_stem'][3]}_w2.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(CorruptImageError, match=str(bad)):
        prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False, chunk_sites=2)
    with pytest.raises(CorruptImageError, match=str(bad)):  # the same through worker processes
        prepare_store(tiny_root, table, workers=2, folder=tmp_path, progress=False, chunk_sites=2)
    assert not list(tmp_path.glob("*/complete.json"))
    gone = tiny_root / f"{table['image_stem'][7]}_w5.png"
    gone.unlink()
    with pytest.raises(MissingImageError, match=str(gone)):
        prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False)
    with pytest.raises(ValueError, match="twice"):
        prepare_store(tiny_root, pd.concat([table.iloc[:2], table.iloc[:1]]), folder=tmp_path, progress=False)


def test_changed_image_or_metadata_gives_another_store(tiny_root, tmp_path):
    table = read_metadata(tiny_root)
    first = prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False)
    stem = table["image_stem"][0]
    path = tiny_root / f"{stem}_w1.png"
    write_png(path, np.zeros((16, 16), np.uint8))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    changed = prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False)
    assert changed.folder != first.folder and not changed.read(0)[0].any()
    (tiny_root / "metadata.csv").write_text((tiny_root / "metadata.csv").read_text() + "\n")
    assert prepare_store(tiny_root, table, workers=1, folder=tmp_path, progress=False).folder != changed.folder


def test_an_interrupted_prepare_resumes_to_the_same_bytes(tiny_root, tmp_path, monkeypatch):
    table = read_metadata(tiny_root)
    reference = prepare_store(tiny_root, table, workers=1, folder=tmp_path / "reference", progress=False,
                              chunk_sites=2)
    real_load, calls = store_module.load_site_stem, []

    def failing(root, stem, size=None):
        calls.append(stem)
        if len(calls) == 8:  # the fourth chunk (call 1 decodes site 0 for the shape): chunks 0-2 are done
            raise KeyboardInterrupt
        return real_load(root, stem, size)

    monkeypatch.setattr(store_module, "load_site_stem", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare_store(tiny_root, table, workers=1, folder=tmp_path / "resumed", progress=False, chunk_sites=2)
    folder = next((tmp_path / "resumed").iterdir())
    assert sorted(p.name for p in (folder / "chunks").glob("*.npy")) == [
        "000000000-000000002.npy", "000000002-000000004.npy", "000000004-000000006.npy"]
    assert not (folder / "complete.json").exists()
    with pytest.raises(FileNotFoundError, match="not a complete site store"):
        SiteStore(folder)
    with open(folder / "sites.u8", "r+b") as handle:  # garbage where the unrecorded chunks go
        handle.seek(6 * 6 * 16 * 16)
        handle.write(b"\xff" * (6 * 6 * 16 * 16))
    calls.clear()
    monkeypatch.setattr(store_module, "load_site_stem", lambda *args: calls.append(args[1]) or real_load(*args))
    resumed = prepare_store(tiny_root, table, workers=1, folder=tmp_path / "resumed", progress=False, chunk_sites=2)
    assert resumed.folder == folder and len(calls) == 1 + 6  # site 0 for the shape, then only chunks 3-5
    assert (folder / "sites.u8").read_bytes() == (reference.folder / "sites.u8").read_bytes()
    assert np.array_equal(np.load(folder / "intensities.npy"), np.load(reference.folder / "intensities.npy"))
    assert (folder / "stats_experiment.csv").read_bytes() == (reference.folder / "stats_experiment.csv").read_bytes()


def test_a_killed_prepare_process_resumes(tiny_root, tmp_path):
    """SIGKILL a real prepare after its first chunks are recorded; the next call finishes the same bytes."""
    table = read_metadata(tiny_root)
    reference = prepare_store(tiny_root, table, workers=1, folder=tmp_path / "reference", progress=False,
                              chunk_sites=2)
    script = textwrap.dedent(f"""
        import time
        import rxlib.data.store as s
        from rxlib.data import read_metadata
        real = s.load_site_stem
        def slow(*args, **kwargs):
            time.sleep(0.3)
            return real(*args, **kwargs)
        s.load_site_stem = slow
        s.prepare_store({str(tiny_root)!r}, read_metadata({str(tiny_root)!r}), workers=1,
                        folder={str(tmp_path / 'killed')!r}, progress=False, chunk_sites=2)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(list((tmp_path / "killed").glob("*/chunks/*.npy"))) >= 2:
                break
            assert proc.poll() is None, "the prepare ended before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    folder = next((tmp_path / "killed").iterdir())
    assert not (folder / "complete.json").exists()
    # another chunk size: no record names the same rows, so all is decoded again, to the same bytes
    resumed = prepare_store(tiny_root, table, workers=1, folder=tmp_path / "killed", progress=False, chunk_sites=3)
    assert resumed.folder == folder
    assert (folder / "sites.u8").read_bytes() == (reference.folder / "sites.u8").read_bytes()


def test_prepare_from_the_shell_is_the_store_the_splits_read(tiny_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    assert store_module.main([str(tiny_root), "--workers", "1"]) == 0
    folder = capsys.readouterr().out.split(":")[0]
    assert held_out_split(tiny_root, storage="store").train.store.folder == Path(folder)
