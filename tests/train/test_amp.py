"""Mixed precision from one key (``amp_dtype``) and predictions with a run's device and settings."""
from __future__ import annotations

import importlib
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.models import build_model
from rxlib.train import TrainConfig, load_trained_model, predict, train
from rxlib.train.loop import AMP_DTYPES, CHECKPOINT_FORMAT, autocast, load_checkpoint, needs_grad_scaler, save_checkpoint

from test_loop import FakeRxRx1, _config  # tests/train is on sys.path (pytest rootdir-relative import)

evaluate_module = importlib.import_module("rxlib.train.evaluate")  # rxlib.train.evaluate is also a function name


def test_amp_dtype_default_values_and_errors():
    assert TrainConfig().amp_dtype == "bfloat16"
    assert TrainConfig(amp_dtype=None).amp_dtype == "float32"
    assert set(AMP_DTYPES) == {"bfloat16", "float16", "float32"}
    with pytest.raises(ValueError, match="'fp8'"):
        TrainConfig(amp_dtype="fp8")
    with pytest.raises(TypeError):
        TrainConfig(amp=True)  # the old boolean is gone: one key


def test_autocast_is_cuda_only_and_follows_the_dtype():
    for dtype in ("bfloat16", "float16", "float32", None):
        assert not isinstance(autocast("cpu", dtype), torch.autocast)
    assert not isinstance(autocast("cuda", "float32"), torch.autocast)
    with warnings.catch_warnings():  # "CUDA is not available" where there is none; the dtype is still set
        warnings.simplefilter("ignore")
        assert autocast("cuda:0", "bfloat16").fast_dtype == torch.bfloat16
        assert autocast("cuda", "float16").fast_dtype == torch.float16
    with pytest.raises(ValueError, match="'half'"):
        autocast("cpu", "half")


def test_grad_scaler_only_for_float16_on_cuda():
    assert needs_grad_scaler("cuda", "float16")
    assert not needs_grad_scaler("cuda", "bfloat16") and not needs_grad_scaler("cuda", "float32")
    assert not needs_grad_scaler("cpu", "float16")


def test_cpu_checkpoints_have_no_scaler_and_amp_dtype_is_ignored_on_cpu(tmp_path):
    data = FakeRxRx1(8, seed=0), FakeRxRx1(4, seed=1)
    a = train(_config(epochs=1, pseudo_label=False, amp_dtype="float16"), *data, out_dir=tmp_path / "a", progress=False)
    b = train(_config(epochs=1, pseudo_label=False, amp_dtype="float32"), *data, out_dir=tmp_path / "b", progress=False)
    assert "scaler" not in load_checkpoint(a.checkpoint)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_model_files_of_older_configs_still_load(tmp_path):
    model = build_model("tiny_densenet", 5, embedding_dim=16)
    old_config = {**TrainConfig(arch="tiny_densenet", n_classes=5, embedding_dim=16).to_dict(), "amp": True}
    del old_config["amp_dtype"]
    save_checkpoint(tmp_path / "model.pt", {"format": CHECKPOINT_FORMAT, "config": old_config, "epoch": 1,
                                            "model": model.state_dict(), "in_channels": 6, "n_cell_types": 4})
    loaded = load_trained_model(tmp_path / "model.pt")
    assert not loaded.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_predict_keeps_the_models_device_mode_and_layout():
    torch.manual_seed(0)
    model = build_model("tiny_densenet", 5, embedding_dim=16).train()
    data = FakeRxRx1(6, seed=3)
    out = predict(model, data, batch_size=4, num_workers=0, amp_dtype="bfloat16", channels_last=True)
    ref = predict(model, data, batch_size=6, device="cpu")
    assert model.training and next(model.parameters()).device.type == "cpu"
    assert all(p.is_contiguous() for p in model.parameters())
    assert out["logits"].dtype == np.float32 and out["embedding"].shape == (6, 16)
    np.testing.assert_allclose(out["logits"], ref["logits"], rtol=1e-5, atol=1e-5)  # no autocast on the CPU


def test_held_out_predictions_use_the_runs_settings(monkeypatch):
    seen = {}

    def fake_predict(model, dataset, **kw):
        seen.update(kw)
        n = len(dataset)
        return {"embedding": np.zeros((n, 2), np.float32), "logits": np.zeros((n, 3), np.float32),
                "cosine": np.zeros((n, 3), np.float32), "label": np.zeros(n, np.int64), "index": np.arange(n)}

    class WithTable(FakeRxRx1):
        table = pd.DataFrame({"label": [0, 1, 2, 0], "cell_type": ["HEPG2"] * 4})

    monkeypatch.setattr(evaluate_module, "predict", fake_predict)
    config = TrainConfig(device="cuda:1", num_workers=3, amp_dtype="float16", channels_last=True, batch_size=80)
    table = evaluate_module.held_out_predictions(object(), WithTable(4), config)
    assert len(table) == 4
    assert seen == {"batch_size": 80, "device": "cuda:1", "num_workers": 3, "amp_dtype": "float16",
                    "channels_last": True}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp_dtype", ["bfloat16", "float16"])
def test_cuda_amp_dtypes_checkpoint_and_resume(tmp_path, amp_dtype):
    data = FakeRxRx1(8, seed=0), FakeRxRx1(4, seed=1), FakeRxRx1(4, seed=2, unlabelled=True)
    config = _config(device="cuda", amp_dtype=amp_dtype, epochs=2)
    full = train(config, *data, out_dir=tmp_path / "full", progress=False)
    assert ("scaler" in load_checkpoint(full.checkpoint)) == (amp_dtype == "float16")
    train(config, *data, out_dir=tmp_path / "resumed", stop_after_epoch=1, progress=False)
    resumed = train(config, *data, out_dir=tmp_path / "resumed", progress=False)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k].float(), v.float(), rtol=1e-2, atol=1e-2)
    out = predict(full.model, data[1], device="cuda", amp_dtype=amp_dtype, channels_last=True)
    assert out["logits"].dtype == np.float32 and np.isfinite(out["logits"]).all()
