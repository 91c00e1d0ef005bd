"""The training loop on a tiny fake data set: outputs, determinism, resume, bad checkpoints."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from rxlib.train import CheckpointError, TrainConfig, latest_checkpoint, load_trained_model, predict, train
from rxlib.train.loop import HISTORY_COLUMNS, checkpoint_path


class FakeRxRx1(Dataset):
    """Random 6-channel images in the RxRx1Dataset item format; class k brightens channel k."""

    def __init__(self, n: int, n_labelled_classes: int = 3, size: int = 32, seed: int = 0, unlabelled: bool = False):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % n_labelled_classes
        self.images = torch.randn(n, 6, size, size, generator=g)
        self.images[torch.arange(n), self.labels] += 1.0
        self.cell = torch.randint(0, 4, (n,), generator=g)
        self.unlabelled = unlabelled

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        label = -1 if self.unlabelled else int(self.labels[i])
        return {"image": self.images[i], "cell_type": torch.nn.functional.one_hot(self.cell[i], 4).float(),
                "label": torch.tensor(label, dtype=torch.int64), "index": i}


def _config(**kw) -> TrainConfig:
    base = dict(arch="tiny_densenet", n_classes=5, embedding_dim=16, epochs=3, batch_size=4, lr=3e-3,
                cutmix=True, pseudo_label=True, pseudo_t1=1, pseudo_t2=2, seed=7)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return FakeRxRx1(8, seed=0), FakeRxRx1(4, seed=1), FakeRxRx1(4, seed=2, unlabelled=True)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("full")
    return train(_config(), *data, out_dir=out, progress=False)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_outputs_and_history(full_run):
    history = pd.read_csv(full_run.out_dir / "history.csv")
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["alpha"].tolist() == [0.0, 1.0, 1.0]  # T1=1, T2=2, alpha_f=1
    assert history["lr"].iloc[0] == pytest.approx(3e-3) and history["lr"].iloc[2] < history["lr"].iloc[0]
    assert (history["train_n"] == 8).all() and (history["val_n"] == 4).all()
    for col in ("train_loss", "val_loss_softmax", "val_loss_arc", "val_acc_softmax", "val_acc_arc"):
        assert history[col].notna().all(), col
    assert ((history["val_acc_arc"] >= 0) & (history["val_acc_arc"] <= 1)).all()
    assert full_run.completed_epochs == 3
    assert latest_checkpoint(full_run.out_dir) == checkpoint_path(full_run.out_dir, 3)
    assert not checkpoint_path(full_run.out_dir, 1).exists()  # keep_checkpoints = 2
    assert not list((full_run.out_dir / "checkpoints").glob("*.part"))
    reloaded = load_trained_model(full_run.model_path)
    assert _same_weights(reloaded, full_run.model)


def test_resume_equals_uninterrupted(tmp_path, data, full_run):
    first = train(_config(), *data, out_dir=tmp_path, stop_after_epoch=1, progress=False)
    assert first.completed_epochs == 1 and first.model_path is None
    resumed = train(_config(), *data, out_dir=tmp_path, progress=False)
    assert resumed.completed_epochs == 3
    assert _same_weights(resumed.model, full_run.model)
    cols = [c for c in HISTORY_COLUMNS if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.history[cols], full_run.history[cols])


def test_seeded_runs_are_identical_and_seeds_matter(tmp_path, data, full_run):
    again = train(_config(), *data, out_dir=tmp_path / "again", progress=False)
    assert _same_weights(again.model, full_run.model)
    other = train(_config(seed=8, epochs=1), *data, out_dir=tmp_path / "other", progress=False)
    assert not math.isclose(other.history["train_loss"].iloc[0], full_run.history["train_loss"].iloc[0])


def test_without_validation_each_epoch_the_weights_are_the_same_and_the_curves_empty(tmp_path, data, full_run):
    quiet = train(_config(validate_each_epoch=False), *data, out_dir=tmp_path, progress=False)
    assert _same_weights(quiet.model, full_run.model)  # every epoch reseeds its streams: validation draws nothing
    assert quiet.history["val_loss"].isna().all() and quiet.history["train_loss"].notna().all()
    pd.testing.assert_series_equal(quiet.history["train_loss"], full_run.history["train_loss"])


def test_a_checkpoint_from_before_a_new_setting_resumes_with_its_default(tmp_path, data):
    train(_config(epochs=2), *data, out_dir=tmp_path, stop_after_epoch=1, progress=False)
    path = checkpoint_path(tmp_path, 1)
    state = torch.load(path, weights_only=False)
    del state["config"]["validate_each_epoch"]  # written before the setting existed
    torch.save(state, path)
    assert train(_config(epochs=2), *data, out_dir=tmp_path, progress=False).completed_epochs == 2


def test_truncated_checkpoint_is_named(tmp_path, data):
    train(_config(epochs=2), *data, out_dir=tmp_path, stop_after_epoch=1, progress=False)
    path = checkpoint_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="epoch_001.pt"):
        train(_config(epochs=2), *data, out_dir=tmp_path, progress=False)


def test_resume_with_other_config_is_refused(tmp_path, data):
    train(_config(epochs=2), *data, out_dir=tmp_path, stop_after_epoch=1, progress=False)
    with pytest.raises(CheckpointError, match=r"lr: 0.003 -> 0.01"):
        train(_config(epochs=2, lr=0.01), *data, out_dir=tmp_path, progress=False)


def test_softmax_only_without_extras_and_predict(tmp_path, data):
    result = train(_config(epochs=1, loss="softmax", cutmix=False, pseudo_label=False), data[0], None,
                   out_dir=tmp_path, progress=False)
    assert math.isnan(result.history["val_loss"].iloc[0])
    out = predict(result.model, data[1], batch_size=4)
    assert out["embedding"].shape == (4, 16) and out["cosine"].shape == (4, 5) and out["index"].tolist() == list(range(4))
    assert result.model.training  # predict restores the mode


def test_bad_configs():
    with pytest.raises(ValueError, match="'hinge'"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="T1=3, T2=3"):
        TrainConfig(pseudo_label=True, pseudo_t1=3, pseudo_t2=3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_amp_channels_last_and_resume(tmp_path, data):
    config = _config(device="cuda", amp_dtype="bfloat16", channels_last=True)
    full = train(config, *data, out_dir=tmp_path / "full", progress=False)
    assert full.history["train_loss"].notna().all()
    train(config, *data, out_dir=tmp_path / "resumed", stop_after_epoch=1, progress=False)
    resumed = train(config, *data, out_dir=tmp_path / "resumed", progress=False)
    for k, v in full.model.state_dict().items():  # cuDNN may choose other algorithms: close, not equal
        torch.testing.assert_close(resumed.model.state_dict()[k].float(), v.float(), rtol=1e-3, atol=1e-3)
