"""Peak host memory of the data paths of notebooks 05, 07 and 08 with ``storage='store'``.

A synthetic data set of 256x256 sites is written whose held-out split, stacked as float32 (what the
old in-memory path and the old DCMIX held, besides the uint8 copies), is several times the cap.
A fresh Python process then runs, with a tiny network, what the notebooks do with the data: the
features of held-out sites (05), predictions and Grad-CAMO over every held-out site and the displayed
raw sites (07), the channel-importance sample and per-class DCMIX (08). Its peak RSS above the
baseline must stay under the cap. The baseline is taken after the imports and after one pass of the
network at the batch sizes used (its activations depend on the batch size, not on the data set), so
what is measured is what the data paths hold.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from rxlib.io import write_png

REPO = Path(__file__).resolve().parents[2]
SIZE = 256
WELLS = 55              # per experiment and plate; 2 sites each: 110 sites per experiment
TRAIN, TEST = ("HEPG2-01", "U2OS-01"), ("HEPG2-02", "U2OS-02")
CAP_MB = 100


def write_blocky_official(root: Path, seed: int = 0) -> pd.DataFrame:
    """An official-layout data set of blocky random 256x256 sites (fast to encode and decode) with
    the synthetic ground-truth masks Grad-CAMO reads; 6 treatments and the negative control."""
    rng = np.random.default_rng(seed)
    rows = []
    cells = np.kron(rng.integers(0, 4, (16, 16)), np.ones((SIZE // 16, SIZE // 16))).astype(np.uint16)
    phenotype = ((cells > 0) & (cells % 2 == 0)).astype(np.uint8) * 255
    for experiment in TRAIN + TEST:
        for w in range(WELLS):
            well = f"{'BCDEFGHIJKLMNO'[w // 22]}{2 + w % 22:02d}"
            control = w % 7 == 6
            sirna_id = 1138 if control else w % 7
            for site in (1, 2):
                rows.append({"site_id": f"{experiment}_1_{well}_{site}", "well_id": f"{experiment}_1_{well}",
                             "cell_type": experiment.split("-")[0], "dataset": "train" if experiment in TRAIN else "test",
                             "experiment": experiment, "plate": 1, "well": well, "site": site,
                             "well_type": "negative_control" if control else "treatment",
                             "sirna": "UNTREATED" if control else f"s{sirna_id:05d}", "sirna_id": sirna_id})
                folder = root / "images" / experiment / "Plate1"
                for c in range(1, 7):
                    low = rng.integers(0, 256, (32, 32), dtype=np.uint8)
                    write_png(folder / f"{well}_s{site}_w{c}.png", np.kron(low, np.ones((8, 8), np.uint8)))
                masks = root / "truth" / "masks" / experiment / "Plate1"
                write_png(masks / f"{well}_s{site}_cells.png", cells)
                write_png(masks / f"{well}_s{site}_phenotype.png", phenotype)
    table = pd.DataFrame(rows)
    table.to_csv(root / "metadata.csv", index=False)
    return table


SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from rxlib.data.splits import split_sites
    from rxlib.explain.dcmix import dcmix_for_data_root
    from rxlib.explain.embeddings import features_of, most_frequent_classes
    from rxlib.explain.gradcamo import grad_camo_dataset
    from rxlib.explain.sites import pick_examples, sample_positions, site_batch
    from rxlib.models import build_model
    from rxlib.train.evaluate import predictions_table

    def peak_mb(who=resource.RUSAGE_SELF):
        return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux

    root = sys.argv[1]
    torch.manual_seed(0)
    model = build_model("tiny_densenet", 1139, embedding_dim=16, memory_efficient=False).eval()
    # the network's own working memory depends on the batch size, not on the data set: run it once at the
    # batch sizes used below (forward 16, Grad-CAM 8), so that the baseline holds it
    from rxlib.explain.cam import grad_cam
    with torch.no_grad():
        model(torch.zeros(16, 6, 256, 256), torch.eye(4)[[0] * 16])
    grad_cam(model, torch.zeros(8, 6, 256, 256), torch.eye(4)[[0] * 8], [0] * 8, layer="denseblock2", upsample=True)
    baseline = peak_mb()
    held_out = split_sites(root, "test")                        # prepares the store (worker processes)
    train_labels = split_sites(root, "train").table["label"]
    # notebook 05: features of the held-out sites of the 3 most frequent classes
    x, y = features_of(model, held_out, most_frequent_classes(train_labels, 3), batch_size=16)
    # notebook 07: predictions, the examples shown (raw pixels), Grad-CAMO over every held-out site
    examples = pick_examples(predictions_table(model, held_out, batch_size=16))
    shown = held_out.raw_images(examples["position"])
    scores = grad_camo_dataset(model, held_out, root, layer="denseblock2", batch_size=8)
    # notebook 08: a capped channel-importance sample, per-class DCMIX from bounded samples
    batch = site_batch(held_out, sample_positions(held_out.table, 24, by="label"))  # notebook: 240 at any scale
    dcmix = dcmix_for_data_root(root, cache=False, steps=10, sites_per_class=16)
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak_mb(),
                      "children_peak_mb": peak_mb(resource.RUSAGE_CHILDREN), "n_held_out": len(held_out),
                      "n_scores": len(scores), "n_features": len(x), "n_dcmix": len(dcmix),
                      "batch": list(batch["image"].shape), "shown": list(shown.shape)}))
""")


def test_notebook_data_paths_stay_under_a_memory_cap(tmp_path):
    table = write_blocky_official(tmp_path / "data")
    site_mb = 6 * SIZE * SIZE / 2**20
    n_test = int((table["dataset"] == "test").sum())
    stacked_test_float32 = n_test * site_mb * 4
    # the old path: split_sites held the split as uint8 plus a float64 copy of an experiment's sites for
    # the statistics; DCMIX stacked both splits as float32 on top of both uint8 splits
    old_dcmix = len(table) * site_mb * (4 + 1)
    assert stacked_test_float32 > 3 * CAP_MB  # the data set is large enough for the test to mean something
    env = {**os.environ, "PYTHONPATH": str(REPO), "RXLIB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "data")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    increase = result["peak_mb"] - result["baseline_mb"]
    print(f"peak RSS above baseline: {increase:.0f} MB (baseline {result['baseline_mb']:.0f} MB, peak "
          f"{result['peak_mb']:.0f} MB; store workers peaked at {result['children_peak_mb']:.0f} MB); cap {CAP_MB} MB; "
          f"the held-out split stacked as float32 is {stacked_test_float32:.0f} MB, the old DCMIX path held "
          f"{old_dcmix:.0f} MB ({n_test} held-out sites of {len(table)}, {SIZE}x{SIZE})")
    assert result["n_scores"] == result["n_held_out"] and result["n_features"] > 0 and result["n_dcmix"] == 6
    assert result["batch"][0] <= 24 and result["shown"][1:] == [6, SIZE, SIZE]
    assert increase < CAP_MB
    assert result["children_peak_mb"] < result["baseline_mb"] + CAP_MB
