"""Score the explanation methods against the planted ground truth of a synthetic RxRx1.

Trains a small network on the synthetic train split (CPU, minutes), then on held-out sites explains
the true class and writes under ``reports/benchmarks/``:

- ``channel_importance.csv``: the method table of :func:`rxlib.explain.channel_importance_table`
  (eq. 15 printed and agreement readings, occlusion, gradient x input, and DCMIX trained alongside);
- ``grad_camo.csv``: mean Grad-CAMO per cell type with the truth masks (cells, planted phenotype).

    python benchmarks/eval_explain_synthetic.py --data /tmp/syn0 [--epochs 8]

This is an evaluation, not a test: the numbers depend on how well the small network learnt.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from torch import nn


def load_split(root, table: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from rxlib.config import CELL_TYPES
    from rxlib.data.images import load_site

    images = np.stack([load_site(root, r.experiment, int(r.plate), r.well, int(r.site)) for r in table.itertuples()])
    x = torch.from_numpy(images).float()
    x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)  # per image+channel
    cell = torch.eye(len(CELL_TYPES))[[CELL_TYPES.index(c) for c in table["cell_type"]]]
    return x, cell, torch.as_tensor(table["label"].to_numpy().copy())


def train(model: nn.Module, x, cell, y, epochs: int, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        losses = []
        for start in range(0, len(x), 32):
            idx = order[start:start + 32]
            logits = model(x[idx], cell[idx])["logits"]
            loss = nn.functional.cross_entropy(logits, y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        print(f"  {type(model).__name__} epoch {epoch + 1}: loss {np.mean(losses):.3f}", flush=True)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    from rxlib.config import reports_dir
    from rxlib.data import read_metadata
    from rxlib.explain import (
        DCMixNet,
        channel_importance_table,
        channel_importances,
        grad_cam,
        grad_camo_image,
        load_truth_masks,
        planted_importance,
    )
    from rxlib.io import write_csv
    from rxlib.models import build_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--layer", default="denseblock3")
    parser.add_argument("--max-eval", type=int, default=256)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    meta = read_metadata(args.data)
    classes = pd.read_csv(f"{args.data}/truth/classes.csv")
    n_classes = int(classes["class_id"].max()) + 1
    train_rows = meta[meta["split"] == "train"]
    eval_rows = meta[meta["split"] == "test"].sample(frac=1.0, random_state=0).head(args.max_eval)
    x, cell, y = load_split(args.data, train_rows)
    xe, celle, ye = load_split(args.data, eval_rows)

    model = train(build_model("tiny_densenet", n_classes, embedding_dim=64), x, cell, y, args.epochs)
    dcmix = train(DCMixNet(build_model("tiny_densenet", n_classes, embedding_dim=64, in_channels=1)), x, cell, y, args.epochs)
    with torch.no_grad():
        acc = (model(xe, celle)["logits"].argmax(1) == ye).float().mean().item()
    print(f"held-out accuracy {acc:.3f}; DCMIX weights {dcmix.channel_importance().numpy().round(3)}")

    per_image: dict[str, list[torch.Tensor]] = {}
    cams = []
    for start in range(0, len(xe), 32):
        sl = slice(start, start + 32)
        targets = ye[sl].tolist()
        for method, values in channel_importances(model, xe[sl], celle[sl], targets, layer=args.layer).items():
            per_image.setdefault(method, []).append(values)
        cams.append(grad_cam(model, xe[sl], celle[sl], targets, layer=args.layer, upsample=True, normalise=True))
    importances = {m: torch.cat(v).numpy() for m, v in per_image.items()}
    planted = planted_importance(classes)
    dcmix_frame = pd.DataFrame([dcmix.channel_importance().numpy()] * len(planted), index=planted.index, columns=planted.columns)
    table = channel_importance_table({**importances, "dcmix_global": dcmix_frame}, ye.numpy(), planted)
    table.insert(0, "accuracy", acc)
    print(table.to_string(index=False))
    write_csv(reports_dir() / "benchmarks" / "channel_importance.csv", table)

    rows = []
    for cam, rec in zip(torch.cat(cams).numpy(), eval_rows.itertuples()):
        masks = load_truth_masks(args.data, rec.experiment, rec.plate, rec.well, rec.site)
        cells = grad_camo_image(cam, masks["cells"])
        rows.append({"cell_type": rec.cell_type, "grad_camo_cells": cells["grad_camo"], "cell_fraction": cells["cell_fraction"],
                     "grad_camo_phenotype": grad_camo_image(cam, masks["phenotype"].astype(int))["grad_camo"],
                     "phenotype_fraction": float(masks["phenotype"].mean())})
    camo = pd.DataFrame(rows).groupby("cell_type").mean().reset_index()
    print(camo.round(3).to_string(index=False))
    write_csv(reports_dir() / "benchmarks" / "grad_camo.csv", camo)


if __name__ == "__main__":
    main()
