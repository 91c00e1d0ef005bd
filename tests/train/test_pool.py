"""Models trained up front in worker processes (rxlib.train.pool): how many workers, which models, and the
same model as training in the notebook's own process."""
from __future__ import annotations

import pytest
import torch

from rxlib.profiles import run_config, settings
from rxlib.train import pool, registry


def test_workers_follow_the_cores_the_jobs_and_the_device(monkeypatch):
    monkeypatch.delenv("RXLIB_WORKERS", raising=False)
    monkeypatch.setattr(pool, "usable_cores", lambda: 2)
    assert pool.worker_count(9) == 2 and pool.worker_count(1) == 1
    assert pool.worker_count(9, "cuda") == 1  # one GPU: models train one after another
    monkeypatch.setenv("RXLIB_WORKERS", "3")
    assert pool.worker_count(9) == 3 and pool.worker_count(2) == 2
    monkeypatch.setenv("RXLIB_WORKERS", "two")
    with pytest.raises(ValueError, match="RXLIB_WORKERS must be a positive integer, got 'two'"):
        pool.worker_count(9)


def test_planned_jobs_name_each_registry_key_once(tiny_synth, registry_cache):
    s = settings("smoke", {"train.epochs": 2, "budget.comparison_plates": None})  # comparisons like the recipe: reference is main
    jobs = pool.planned_jobs(s, ["02_backbone", "05_embeddings_tsne", "06_conv_filters"], tiny_synth)
    keys = [job.key for job in jobs]
    assert len(keys) == len(set(keys)) == 3  # main (= reference = without_pl), resnet, with_pl
    assert any(set(job.label.split(" = ")) >= {"main", "reference", "without_pl"} for job in jobs)
    assert {job.config.train["arch"] for job in jobs} == {"tiny_densenet", "tiny_resnet"}


def test_a_model_trained_by_a_worker_equals_one_trained_in_process(tiny_synth, registry_cache, tiny_run, monkeypatch):
    """One thread in a spawned worker or in this process: the same floats, so where a model was trained
    does not change it."""
    config = run_config("smoke", **tiny_run).resolved(tiny_synth)
    job = pool.Job("tiny", config, tiny_synth, registry.model_key(config, tiny_synth))
    results = pool.train_jobs([job], workers=1, log=lambda *_: None)
    worker_state = torch.load(registry.find_model(config, tiny_synth) / "model.pt", weights_only=False)
    assert list(results) == [job.key]

    monkeypatch.setenv("RXLIB_CACHE", str(registry_cache.parent / "other-cache"))
    local = registry.train_or_load(config, tiny_synth)
    assert local.trained_now
    local_state = torch.load(local.folder / "model.pt", weights_only=False)
    weights = {k: v for k, v in worker_state["model"].items()} if "model" in worker_state else worker_state
    others = {k: v for k, v in local_state["model"].items()} if "model" in local_state else local_state
    assert weights.keys() == others.keys()
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, others[name]), name


def _weights(folder):
    state = torch.load(folder / "model.pt", weights_only=False)
    return state["model"] if "model" in state else state


def test_a_model_does_not_depend_on_the_one_its_worker_trained_before(tiny_synth, registry_cache, tiny_run,
                                                                      monkeypatch):
    """A worker's helper trains one model after another (rxlib.workers): the second model it trains is the
    same, float for float, as that model trained by a fresh worker."""
    first = run_config("smoke", **{**tiny_run, "seed": 5, "loss": "softmax"}).resolved(tiny_synth)
    second = run_config("smoke", **tiny_run).resolved(tiny_synth)
    jobs = [pool.Job(name, c, tiny_synth, registry.model_key(c, tiny_synth))
            for name, c in (("first", first), ("second", second))]
    monkeypatch.setattr(pool, "_cost", lambda job: -["first", "second"].index(job.label))  # first, then second
    pool.train_jobs(jobs, workers=1, log=lambda *_: None)
    after_another = _weights(registry.find_model(second, tiny_synth))

    monkeypatch.setenv("RXLIB_CACHE", str(registry_cache.parent / "fresh-cache"))
    pool.train_jobs(jobs[1:], workers=1, log=lambda *_: None)
    alone = _weights(registry.find_model(second, tiny_synth))
    assert after_another.keys() == alone.keys()
    for name, tensor in after_another.items():
        if isinstance(tensor, torch.Tensor):
            assert torch.equal(tensor, alone[name]), name


def test_a_failing_training_names_its_model(tiny_synth, registry_cache, tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metadata.csv").write_text((tiny_synth / "metadata.csv").read_text())  # metadata, no images
    config = run_config("smoke", **tiny_run).resolved(tiny_synth)
    config.data["storage"] = "png"  # no site store to prepare up front: the worker meets the missing images
    job = pool.Job("tiny", config, empty, "k")
    with pytest.raises(pool.TrainingFailed, match="training tiny .* failed: .*"):
        pool.train_jobs([job], workers=1, log=lambda *_: None)


def test_each_new_epoch_of_a_running_job_is_reported_once_with_its_rate_and_time_left(registry_cache, tiny_synth):
    config = run_config("smoke", epochs=4).resolved(tiny_synth)
    job = pool.Job("main = reference", config, tiny_synth, "abc")
    folder = registry.models_dir() / "abc"
    folder.mkdir(parents=True)
    lines, seen = [], {}
    pool._report_epochs(job, seen, lines.append)  # no history yet: nothing to say
    (folder / "history.csv").write_text("epoch,train_n,seconds\n1,100,2.0\n2,100,2.0\n")
    pool._report_epochs(job, seen, lines.append)
    pool._report_epochs(job, seen, lines.append)  # nothing new
    assert lines == ["    main: epoch 2/4, 50 images/s, about 4 s left"]


def test_a_long_epoch_reports_its_step_from_the_progress_file(tiny_synth, registry_cache, tiny_run, monkeypatch):
    """The loop writes progress.json during an epoch; the pool turns it into a step line with the rate
    and the time left in the epoch, at most once per STEP_LINE_EVERY_S."""
    import json

    from rxlib.train import loop

    monkeypatch.setattr(loop, "STEP_PROGRESS_S", 0.0)  # write at every step
    config = run_config("smoke", **tiny_run).resolved(tiny_synth)
    trained = registry.train_or_load(config, tiny_synth)
    written = json.loads((trained.folder / loop.PROGRESS_FILE).read_text())
    assert written["epoch"] == written["epochs"] == tiny_run["epochs"]
    assert 0 <= written["step"] < written["steps"] and written["images_per_s"] > 0

    job = pool.Job("tiny", config, tiny_synth, trained.folder.name)
    lines, seen = [], {}
    monkeypatch.setattr(pool, "STEP_LINE_EVERY_S", 0.0)
    pool._report_steps(job, seen, lines.append)
    assert lines == [f"    tiny: epoch {written['epoch']}/{written['epochs']}, step {written['step']}/{written['steps']}, "
                     f"{written['images_per_s']:.0f} images/s, about "
                     f"{(written['steps'] - written['step']) * tiny_run['batch_size'] / written['images_per_s']:.0f} s "
                     "left in this epoch"]
    monkeypatch.setattr(pool, "STEP_LINE_EVERY_S", 3600.0)
    pool._report_steps(job, seen, lines.append)
    assert len(lines) == 1  # not again within the interval
