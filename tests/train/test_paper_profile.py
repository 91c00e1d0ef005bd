"""The paper profile's DenseNet-161 at 6x512x512 trains a few steps on the CPU (slow)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import Dataset

from rxlib.profiles import run_config
from rxlib.train import train


class Random512(Dataset):
    def __init__(self, n: int, n_classes: int, unlabelled: bool = False):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, 6, 512, 512, generator=g)
        self.labels = torch.arange(n) % n_classes
        self.unlabelled = unlabelled

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "cell_type": torch.nn.functional.one_hot(torch.tensor(i % 4), 4).float(),
                "label": torch.tensor(-1 if self.unlabelled else int(self.labels[i])), "index": i}


@pytest.mark.slow
def test_densenet161_paper_config_trains_on_cpu(tmp_path):
    config = run_config("paper", epochs=1, batch_size=2, max_batches_per_epoch=2, device="cpu", num_workers=0,
                        pseudo_t1=0, pseudo_t2=1, pretrained=False)
    train_config = config.train_config(n_classes=1139)
    assert train_config.arch == "densenet161" and train_config.cutmix and train_config.pseudo_label
    result = train(train_config, Random512(4, 1139), Random512(2, 1139), Random512(4, 1139, unlabelled=True),
                   out_dir=tmp_path, progress=False)
    assert result.completed_epochs == 1 and (tmp_path / "model.pt").is_file()
    assert math.isfinite(result.history["train_loss"].iloc[0]) and result.history["train_n"].iloc[0] == 4
