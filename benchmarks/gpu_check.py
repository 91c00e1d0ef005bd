"""GPU check: is the paper profile ready for one H100/H200? One script, at most 8 minutes.

Measures, with the paper profile's real training settings (DenseNet-161, memory-efficient
checkpointed dense layers, composite loss with both 1,139-class heads, CutMix, Adam), every step
through :func:`rxlib.train.loop.train_step`, the step :func:`rxlib.train.train` runs:

- ``flops``: FLOPs per 6x512x512 image, forward and forward + backward, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device (no compute; the issue quotes
  244 GFLOP per training image). Recomputation by the checkpointed layers is not counted: the share
  of the peak below is the model-FLOP utilisation.
- ``peak``: the GPU's bf16 dense peak from its data sheet (by name) and the measured rate of bf16
  8192^3 matmuls.
- ``train``: training images/s on random images in fp32; bf16 autocast + channels-last; the same
  under ``torch.compile`` (last, in a subprocess with a time limit); peak GPU memory of each, the
  achieved TFLOP/s and its share of the bf16 peak, against the target of >= 1,000 images/s.
- ``max_batch``: the largest batch that fits in bf16 + channels-last (doubling, then bisection, with
  a time cap), and images/s at that batch.
- ``gradcam``: Grad-CAM images/s of rxlib's :func:`rxlib.explain.grad_cam` against pytorch-grad-cam
  (skipped, and said so, where ``pytorch_grad_cam`` is not importable) and against one forward +
  backward pass of the same batch.
- ``loader``: ``--steps`` (200) steps of the training loop on an RxRx1-sized synthetic subset
  (512x512, generated in the background while the other sections run), read through a DataLoader
  with workers from the uint8 site store: images/s and the share of step time spent waiting
  for the loader.

Writes ``reports/benchmarks/gpu_check.csv`` and ``gpu_check.md`` (a markdown table with the GPU's name)
after every section, so a run cut short still leaves what it measured. Each section has a time cap and
the whole run ``--total-cap`` seconds; sections that no longer fit are written as ``skipped``.

    bash benchmarks/gpu_check.sh                       # on the GPU machine (calls this module)
    python3 -m benchmarks.gpu_check --cpu-smoke --out /tmp/x   # every code path on the CPU in seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info  # noqa: E402

#: CSV columns, in order (the machine description of benchmarks/common.py follows them).
COLUMNS = ("section", "what", "status", "batch", "image_size", "steps", "images_per_s", "step_ms", "peak_mem_gib",
           "gflop_per_image", "achieved_tflops", "share_of_bf16_peak", "share_of_matmul_rate", "loader_wait_share",
           "seconds", "note")
#: Training images/s the issue asks of one H100/H200 in bf16 (about 30% of the bf16 peak at 244 GFLOP/image).
TARGET_IMAGES_PER_S = 1000.0
#: GFLOP per training image (forward + backward) that the issue quotes for DenseNet-161 at 6x512x512.
ISSUE_GFLOP_PER_IMAGE = 244.0
#: Dense bf16 tensor-core peak in TFLOP/s from the data sheets, by a substring of the device name (first match).
BF16_PEAK_TFLOPS = (("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4), ("GH200", 989.4),
                    ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0), ("L4", 121.0))
#: Seconds each section may take at most on the GPU (the whole run is capped by --total-cap too).
SECTION_CAPS = {"flops": 40, "peak": 15, "train_bf16_channels_last": 50, "train_fp32": 50, "max_batch": 75,
                "gradcam": 45, "loader": 110, "train_bf16_channels_last_compiled": 170}
#: Seconds a section needs at least to be worth starting (else it is written as skipped).
SECTION_MIN_S = {"train_bf16_channels_last_compiled": 60, "loader": 30, "max_batch": 20}
#: Run order: cheap and most wanted first; torch.compile (minutes of compiling) last, in a subprocess.
SECTIONS = tuple(SECTION_CAPS)
#: Sections run in a subprocess with a time limit: torch.compile cannot be interrupted, and the batch
#: search's failed allocations (or a sticky CUDA error) must not affect the sections after it.
ISOLATED = {"max_batch", "train_bf16_channels_last_compiled"}
#: Seconds kept back from the total cap for writing the results.
RESERVE_S = 5.0


# --- settings --------------------------------------------------------------------------------------


def paper_config(args: argparse.Namespace, **overrides):
    """The paper profile's :class:`~rxlib.train.TrainConfig` (1,139 classes), with the benchmark's
    device and batch; in ``--cpu-smoke`` mode a tiny DenseNet on the CPU instead of DenseNet-161."""
    from rxlib.profiles import run_config

    config = run_config("paper").train_config(n_classes=1139)
    changes = {"device": args.device, "batch_size": args.batch}
    if args.cpu_smoke:
        changes.update(arch="tiny_densenet", embedding_dim=64)
    changes.update(overrides)
    return dataclasses.replace(config, **changes)


def synthetic_overrides(cpu_smoke: bool) -> dict:
    """:func:`rxlib.synth.generate` overrides of the ``rxrx1`` profile for the loader section: one HEPG2
    training experiment, one plate of 170 wells (1,139 class ids kept), one site per well, 512x512; in
    ``--cpu-smoke`` mode ten 32x32 sites."""
    common = {"experiments": (("HEPG2", 1, 0),), "n_plates": 1, "n_sites": 1, "calibration_sites": 1}
    if cpu_smoke:
        return {**common, "image_size": 32, "cell_scale": 0.1, "n_treatments": 8, "n_positive_controls": 1,
                "n_plate_groups": 1}
    return {**common, "n_plate_groups": 8}


def loader_dataset(root: Path, store_folder: Path):
    """The training set the loader section reads, as the paper profile reads it: the synthetic set's
    labelled training sites, augmented, normalised per experiment, from the uint8 site store (prepared
    here on first use, into ``store_folder``).
    """
    from rxlib.data import RxRx1Dataset
    from rxlib.data.metadata import read_metadata
    from rxlib.data.store import prepare_store

    table = read_metadata(root)
    store = prepare_store(root, table, folder=store_folder, progress=False)
    return RxRx1Dataset(root, table, split="train", labelled_only=True, normalize="experiment", augment=True,
                        storage="store", store=store)


# --- measurements ----------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else math.nan


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _random_batch(config, batch: int, size: int, device: torch.device, seed: int = 0):
    """Random images, cell types and labels made on the device (a large batch made on the CPU takes seconds)."""
    g = torch.Generator(device=device).manual_seed(seed)
    images = torch.randn(batch, 6, size, size, generator=g, device=device)
    cell_type = torch.nn.functional.one_hot(torch.arange(batch, device=device) % 4, 4).float()
    labels = torch.randint(0, config.n_classes, (batch,), generator=g, device=device)
    return images, cell_type, labels


def _trainer(config, compiled: bool = False):
    """Model, optimiser and GradScaler as :func:`rxlib.train.train` builds them, and a step function."""
    from rxlib.models import build_model
    from rxlib.train.loop import needs_grad_scaler, train_step

    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.n_classes, embedding_dim=config.embedding_dim,
                        memory_efficient=config.memory_efficient).to(device)
    if device.type == "cuda" and config.channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, config.amp_dtype) else None
    net = torch.compile(model) if compiled else model
    mixing = torch.Generator().manual_seed(config.seed)

    def step(images, cell_type, labels):
        done = train_step(net, optimizer, scaler, config, images, cell_type, labels, mixing=mixing)
        return float(done.loss.detach())  # the loop reads the loss every step (a device sync)

    return model, optimizer, step


def _time_steps(step, inputs, device, cap_s: float, max_steps: int, warmup: int) -> tuple[int, float]:
    """Run ``warmup`` untimed steps, then timed ones until ``max_steps`` or ``cap_s``: (steps, seconds)."""
    start = time.perf_counter()
    for _ in range(warmup):
        step(*inputs)
    _sync(device)
    timed_start, n = time.perf_counter(), 0
    while n < max_steps and (n < 2 or time.perf_counter() - start < cap_s):
        step(*inputs)
        n += 1
    _sync(device)
    return n, time.perf_counter() - timed_start


def measure_flops(args, cap_s: float, state: dict) -> list[dict]:
    """Forward and forward + backward FLOPs per image of the paper's network (meta device: no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    from rxlib.models import build_model

    config = paper_config(args)
    with torch.device("meta"):
        model = build_model(config.arch, config.n_classes, embedding_dim=config.embedding_dim,
                            memory_efficient=config.memory_efficient)
        images = torch.randn(2, 6, args.size, args.size)
        cell_type = torch.zeros(2, 4)
    model.train()
    with FlopCounterMode(display=False) as forward:
        model(images, cell_type)
    with FlopCounterMode(display=False) as both:
        out = model(images, cell_type)
        (out["logits"].float().sum() + out["cosine"].float().sum()).backward()
    fwd, train = forward.get_total_flops() / 2 / 1e9, both.get_total_flops() / 2 / 1e9
    state["gflop_per_image"] = train
    note = (f"{config.arch} at 6x{args.size}x{args.size}, FlopCounterMode on the meta device; the issue quotes "
            f"{ISSUE_GFLOP_PER_IMAGE:.0f} GFLOP per training image")
    return [{"section": "flops", "what": "forward", "image_size": args.size, "gflop_per_image": fwd, "note": note},
            {"section": "flops", "what": "forward_backward", "image_size": args.size, "gflop_per_image": train,
             "note": note}]


def measure_peak(args, cap_s: float, state: dict) -> list[dict]:
    """The bf16 peak: data-sheet value by device name, and the measured rate of large bf16 matmuls."""
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    sheet = next((tflops for key, tflops in BF16_PEAK_TFLOPS if key in name), math.nan)
    n = 8192 if device.type == "cuda" else 256
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    steps, seconds = _time_steps(lambda: a @ b, (), device, min(cap_s, 5.0), 100, 3)
    measured = 2 * n ** 3 * steps / seconds / 1e12
    state["bf16_peak_tflops"] = sheet if not math.isnan(sheet) else measured
    state["matmul_tflops"] = measured
    return [{"section": "peak", "what": "bf16_datasheet", "achieved_tflops": sheet,
             "note": f"dense bf16 peak of '{name}' from the data sheet" if not math.isnan(sheet) else
             f"'{name}' not in the table; shares use the measured matmul rate"},
            {"section": "peak", "what": "bf16_matmul_measured", "achieved_tflops": measured, "steps": steps,
             "note": f"{n}x{n} @ {n}x{n} bf16"}]


def _throughput_row(what: str, batch: int, size: int, steps: int, seconds: float, device, state: dict, note: str) -> dict:
    rate = batch * steps / seconds
    gflop = state.get("gflop_per_image", math.nan)
    tflops = rate * gflop / 1e3
    return {"section": "train", "what": what, "status": "ok", "batch": batch, "image_size": size, "steps": steps,
            "images_per_s": rate, "step_ms": 1e3 * seconds / steps, "peak_mem_gib": _peak_gib(device),
            "gflop_per_image": gflop, "achieved_tflops": tflops,
            "share_of_bf16_peak": tflops / state.get("bf16_peak_tflops", math.nan),
            "share_of_matmul_rate": tflops / state.get("matmul_tflops", math.nan), "note": note}


def measure_training(args, cap_s: float, state: dict, *, amp_dtype: str, channels_last: bool, compiled: bool,
                     what: str) -> list[dict]:
    """Training images/s of the paper's step on random images at ``args.batch``."""
    device = torch.device(args.device)
    if compiled and args.cpu_smoke:
        return [{"section": "train", "what": what, "status": "skipped",
                 "note": "--cpu-smoke does not compile (minutes); on the GPU this runs in a subprocess"}]
    config = paper_config(args, amp_dtype=amp_dtype, channels_last=channels_last)
    _reset_peak(device)
    model, _, step = _trainer(config, compiled=compiled)
    inputs = _random_batch(config, args.batch, args.size, device)
    started = time.perf_counter()
    warmup = 3 if compiled else 2
    steps, seconds = _time_steps(step, inputs, device, cap_s * 0.8, args.timed_steps, warmup)
    tf32 = (", TF32 convolutions (torch's default)" if device.type == "cuda" and amp_dtype == "float32"
            and torch.backends.cudnn.allow_tf32 else "")
    note = (f"amp_dtype={amp_dtype}{tf32}, channels_last={channels_last}, memory_efficient={config.memory_efficient}, "
            f"loss={config.loss}, cutmix={config.cutmix}, {config.n_classes} classes, Adam; random images"
            + (f"; compile + warm-up {time.perf_counter() - started - seconds:.0f} s" if compiled else ""))
    return [_throughput_row(what, args.batch, args.size, steps, seconds, device, state, note)]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def largest_batch(fits, start: int, limit: int, cap_s: float) -> tuple[int, int | None, bool]:
    """The largest batch ``b <= limit`` with ``fits(b)``: doubling from ``start``, then bisection between
    the last batch that fitted (0 if ``start`` did not) and the first that did not, to within 1/16.

    Returns:
        ``(largest that fitted (0: not even 1), smallest that failed or None, whether the search finished
        within cap_s)``.
    """
    deadline = time.perf_counter() + cap_s
    good, bad = 0, None
    b = start
    while b <= limit:
        if time.perf_counter() > deadline:
            return good, bad, False
        if not fits(b):
            bad = b
            break
        good = b
        b *= 2
    if bad is None:
        return good, None, True
    while bad - good > max(1, good // 16):  # to within 1/16 of the answer
        if time.perf_counter() > deadline:
            return good, bad, False
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good, bad, True


def measure_max_batch(args, cap_s: float, state: dict) -> list[dict]:
    """Largest batch of the bf16 + channels-last step that fits in GPU memory, and images/s there."""
    device = torch.device(args.device)
    config = paper_config(args, amp_dtype="bfloat16", channels_last=True)
    model, optimizer, step = _trainer(config)
    limit = args.max_batch_limit

    other_errors: list[str] = []

    def fits(b: int) -> bool:
        inputs = None
        try:
            inputs = _random_batch(config, b, args.size, device, seed=b)
            step(*inputs)
            _sync(device)
            return True
        except Exception as exc:  # out of memory; or a kernel's size limit (recorded in the note)
            if not _is_oom(exc):
                other_errors.append(f"batch {b}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            return False
        finally:
            del inputs
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    search_cap = cap_s * 0.5  # of a cap that includes the subprocess start
    good, bad, finished = largest_batch(fits, args.batch, limit, search_cap)
    note = (f"bf16 + channels-last, memory-efficient layers; doubling from {args.batch} then bisection to 1/16; "
            f"first failing batch {bad}" + ("" if finished else f"; search stopped at its {search_cap:.0f} s cap")
            + (f"; limit {limit} reached" if bad is None else "")
            + (f"; failures other than out-of-memory: {' / '.join(other_errors)}" if other_errors else ""))
    if good == 0:
        return [{"section": "max_batch", "what": "bf16_channels_last", "status": "failed", "note": note}]
    _reset_peak(device)
    inputs = _random_batch(config, good, args.size, device)
    steps, seconds = _time_steps(step, inputs, device, cap_s * 0.25, args.timed_steps, 1)
    row = _throughput_row("bf16_channels_last_at_max_batch", good, args.size, steps, seconds, device, state, note)
    row.update(section="max_batch", max_batch=good)
    row["note"] = f"max batch {good}; " + note
    return [row]


def measure_gradcam(args, cap_s: float, state: dict) -> list[dict]:
    """Grad-CAM images/s: rxlib, pytorch-grad-cam (if importable) and one forward + backward pass."""
    from rxlib.explain.cam import default_layer, grad_cam
    from rxlib.models import build_model

    device = torch.device(args.device)
    config = paper_config(args)
    torch.manual_seed(0)
    model = build_model(config.arch, config.n_classes, embedding_dim=config.embedding_dim,
                        memory_efficient=config.memory_efficient).to(device).eval()
    layer = default_layer(model)
    batch = args.gradcam_batch
    images, cell_type, labels = _random_batch(config, batch, args.size, device)
    classes = labels.tolist()

    def ours():
        return grad_cam(model, images, cell_type, classes, layer=layer, upsample=True, normalise=True)

    def floor():
        model.zero_grad(set_to_none=True)
        out = model(images, cell_type)["logits"]
        out[torch.arange(batch, device=device), labels].sum().backward()

    methods = {"rxlib": ours, "forward_backward_floor": floor}
    reference, note_ref = None, ""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as exc:
        note_ref = f"pytorch_grad_cam is not importable here ({exc}); comparison skipped"
        print(f"gradcam: {note_ref}", flush=True)
    else:
        reference = GradCAM(model.as_classifier(cell_type), model.target_layers(layer))
        targets = [ClassifierOutputTarget(c) for c in classes]
        methods["pytorch_grad_cam"] = lambda: reference(images, targets)
    rows, seconds_of = [], {}
    try:
        for name, fn in methods.items():
            steps, seconds = _time_steps(lambda: fn(), (), device, cap_s / (len(methods) + 1), args.timed_steps, 1)
            seconds_of[name] = seconds / steps
    finally:
        if reference is not None:
            reference.activations_and_grads.release()
    for name, per_batch in seconds_of.items():
        rows.append({"section": "gradcam", "what": name, "status": "ok", "batch": batch, "image_size": args.size,
                     "images_per_s": batch / per_batch, "step_ms": 1e3 * per_batch,
                     "note": f"fp32, eval mode, layer {layer}, upsampled + normalised; time / rxlib's time "
                             f"{per_batch / seconds_of['rxlib']:.2f}"})
    if reference is None:
        rows.append({"section": "gradcam", "what": "pytorch_grad_cam", "status": "skipped", "note": note_ref})
    return rows


def measure_loader(args, cap_s: float, state: dict) -> list[dict]:
    """``args.steps`` steps of the paper's training step fed by a DataLoader with workers from the site store."""
    from torch.utils.data import DataLoader, RandomSampler

    from rxlib.train.loop import _labelled, _to_device

    device = torch.device(args.device)
    started = time.perf_counter()
    root = wait_for_data(state, cap_s * 0.5)
    waited_for_data = time.perf_counter() - started
    build_start = time.perf_counter()
    dataset = loader_dataset(root, Path(state["data_dir"]) / "site_store")
    build_s = time.perf_counter() - build_start
    config = paper_config(args, num_workers=args.workers)
    _reset_peak(device)
    _, _, step = _trainer(config)
    # one loader over a sample with replacement: the steady state of an epoch, without 19 worker restarts
    sampler = RandomSampler(dataset, replacement=True, num_samples=args.steps * config.batch_size,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                        pin_memory=device.type == "cuda", drop_last=True)
    deadline = time.perf_counter() + max(1.0, cap_s - (time.perf_counter() - started))
    it = iter(loader)
    wait = total = 0.0
    steps = images_seen = 0
    warmup = 3
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        batch = _labelled(batch)
        images, cell_type, labels = _to_device(batch, device, False)
        step(images, cell_type, labels)
        _sync(device)
        t2 = time.perf_counter()
        if warmup:  # worker start-up and cuDNN autotuning are not the steady state
            warmup -= 1
            continue
        wait += t1 - t0
        total += t2 - t0
        steps += 1
        images_seen += labels.shape[0]
        if t2 > deadline:
            break
    del it
    note = (f"{len(dataset)} synthetic {args.size}x{args.size} sites (rxlib.synth 'rxrx1' profile, one plate), "
            f"RxRx1Dataset(storage='store') uint8 site store, augment, {config.num_workers} workers, batch "
            f"{config.batch_size}{', pin_memory' if device.type == 'cuda' else ''}; amp_dtype={config.amp_dtype}; store prepared in {build_s:.1f} s; "
            f"waited {waited_for_data:.0f} s for the data; {steps} timed steps after 3 warm-up")
    if steps == 0:
        return [{"section": "loader", "what": "train_loop_from_store", "status": "failed", "note": note}]
    row = _throughput_row("train_loop_from_store", config.batch_size, args.size, steps, total, device, state, note)
    row.update(section="loader", images_per_s=images_seen / total, loader_wait_share=wait / total,
               status="ok" if steps + 3 >= args.steps else "capped")
    return [row]


# --- synthetic data in the background --------------------------------------------------------------


def make_data(out: Path, cpu_smoke: bool, workers: int) -> Path:
    """Generate the loader section's synthetic set (what ``--make-data`` runs in a subprocess)."""
    from rxlib.synth import generate

    return generate(out, profile="rxrx1", seed=0, workers=workers, progress=False,
                    **synthetic_overrides(cpu_smoke))


def start_data(state: dict, args) -> None:
    data_dir = Path(state["data_dir"])
    workers = 1 if args.cpu_smoke else max(1, (os.cpu_count() or 2) - 4)
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--make-data", str(data_dir / "data"),
               "--data-workers", str(workers)] + (["--cpu-smoke"] if args.cpu_smoke else [])
    log = open(data_dir / "make_data.log", "w")  # noqa: SIM115 (closed in wait_for_data)
    state["data_proc"] = subprocess.Popen(command, cwd=HERE.parent, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    state["data_log"] = log


def wait_for_data(state: dict, timeout_s: float) -> Path:
    proc = state["data_proc"]
    try:
        proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise TimeoutError(f"the synthetic data were not ready within {timeout_s:.0f} s "
                           f"(log: {Path(state['data_dir']) / 'make_data.log'})") from None
    finally:
        state["data_log"].close()
    if proc.returncode != 0:
        log = (Path(state["data_dir"]) / "make_data.log").read_text()[-2000:]
        raise RuntimeError(f"generating the synthetic data failed (exit {proc.returncode}):\n{log}")
    return Path(state["data_dir"]) / "data"


# --- orchestration ---------------------------------------------------------------------------------


MEASURE = {
    "flops": measure_flops,
    "peak": measure_peak,
    "train_bf16_channels_last": lambda a, c, s: measure_training(
        a, c, s, amp_dtype="bfloat16", channels_last=True, compiled=False, what="bf16_channels_last"),
    "train_fp32": lambda a, c, s: measure_training(
        a, c, s, amp_dtype="float32", channels_last=False, compiled=False, what="fp32"),
    "max_batch": measure_max_batch,
    "gradcam": measure_gradcam,
    "loader": measure_loader,
    "train_bf16_channels_last_compiled": lambda a, c, s: measure_training(
        a, c, s, amp_dtype="bfloat16", channels_last=True, compiled=True, what="bf16_channels_last_compiled"),
}


def run_isolated(name: str, args, cap_s: float, state: dict) -> list[dict]:
    """Run one section in a subprocess killed after ``cap_s`` (torch.compile cannot be interrupted)."""
    rows_file = Path(state["data_dir"]) / f"{name}.json"
    shared = {k: state[k] for k in ("gflop_per_image", "bf16_peak_tflops", "matmul_tflops") if k in state}
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--section", name, "--rows-json", str(rows_file),
               "--state-json", json.dumps(shared), "--section-cap", str(cap_s), *args.forward]
    try:
        done = subprocess.run(command, cwd=HERE.parent, timeout=cap_s + 10, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return [{"section": "train" if name.startswith("train") else name, "what": name, "status": "timeout",
                 "note": f"did not finish within {cap_s:.0f} s (subprocess killed)"}]
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"section {name} failed in its subprocess (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(rows_file.read_text())


def write_report(rows: list[dict], out: Path, info: dict, total_s: float, partial: bool) -> tuple[Path, Path]:
    """Write ``gpu_check.csv`` (COLUMNS + machine info) and ``gpu_check.md``; returns both paths."""
    import pandas as pd

    from rxlib.io import write_csv

    frame = pd.DataFrame([{**{c: row.get(c) for c in COLUMNS}, **info} for row in rows],
                         columns=[*COLUMNS, *info])
    csv = write_csv(out / "gpu_check.csv", frame)
    md = out / "gpu_check.md"
    md.write_text(markdown(rows, info, total_s, partial))
    return csv, md


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def verdict(rows: list[dict]) -> str:
    """One sentence on the target: >= 1,000 training images/s in bf16 on one GPU."""
    rates = [r for r in rows if r.get("section") in ("train", "max_batch") and r.get("status") == "ok"
             and "bf16" in str(r.get("what")) and r.get("images_per_s")]
    if not rates:
        return "Target >= 1,000 training images/s in bf16: not measured."
    best = max(rates, key=lambda r: r["images_per_s"])
    share = best.get("share_of_bf16_peak")
    met = best["images_per_s"] >= TARGET_IMAGES_PER_S
    target_share = (share * TARGET_IMAGES_PER_S / best["images_per_s"]) if share is not None and not math.isnan(share) \
        else math.nan  # the same FLOPs per image at the target rate
    return (f"Best bf16 training rate: {best['images_per_s']:.0f} images/s ({best['what']}, batch {best['batch']}), "
            f"{_fmt(share, '.1%') or '?'} of the bf16 peak at {_fmt(best.get('gflop_per_image'), '.0f') or '?'} "
            f"GFLOP/image; the target of >= {TARGET_IMAGES_PER_S:.0f} images/s "
            f"({_fmt(target_share, '.0%') or '?'} of this GPU's bf16 peak; the issue says ~30%) is "
            f"{'met' if met else 'NOT met'}.")


def markdown(rows: list[dict], info: dict, total_s: float, partial: bool) -> str:
    gpu = info.get("gpu") or "no GPU (CPU)"
    lines = [f"# GPU check: {gpu}", "",
             f"torch {info.get('torch')}, {info.get('cpu')} ({info.get('cores')} cores), {info.get('when')}; "
             f"{total_s:.0f} s{' (partial: the total cap was reached)' if partial else ''}; "
             f"cuDNN autotuner {'on' if info.get('cudnn_benchmark') else 'off (as in the training loop)'}.", "",
             verdict(rows) if info.get("gpu") else
             "CPU smoke run (--cpu-smoke): it proves the code paths; its numbers are no GPU measurement and "
             "autocast is off on the CPU.", "",
             "| section | what | status | batch | images/s | step ms | peak GiB | GFLOP/image | TFLOP/s "
             "| share of bf16 peak | loader wait | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(" | ".join([
            f"| {r.get('section', '')}", str(r.get("what", "")), str(r.get("status") or "ok"), _fmt(r.get("batch"), "d"),
            _fmt(r.get("images_per_s"), ".1f"), _fmt(r.get("step_ms"), ".1f"), _fmt(r.get("peak_mem_gib"), ".1f"),
            _fmt(r.get("gflop_per_image"), ".4g"), _fmt(r.get("achieved_tflops"), ".4g"),
            _fmt(r.get("share_of_bf16_peak"), ".1%"), _fmt(r.get("loader_wait_share"), ".1%"),
            str(r.get("note") or "").replace("|", "/")]) + " |")
    lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", "--dry", action="store_true",
                        help="every code path on the CPU at tiny sizes (seconds); no timing claims")
    parser.add_argument("--out", default=None, help="output folder (default reports/benchmarks)")
    parser.add_argument("--total-cap", type=float, default=450.0, help="seconds for the whole run")
    parser.add_argument("--steps", type=int, default=200, help="loader section: training steps")
    parser.add_argument("--sections", nargs="*", default=None, help=f"a subset of {', '.join(SECTIONS)}")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default: the paper profile's 16)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="turn on cuDNN's autotuner (the training loop does not)")
    # internal: a section in a subprocess, the background data generation
    parser.add_argument("--section", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows-json", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--state-json", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--section-cap", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--make-data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-workers", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def _settle(args: argparse.Namespace) -> argparse.Namespace:
    """Sizes of the run: the paper's on the GPU, tiny ones with --cpu-smoke."""
    args.forward = ((["--cpu-smoke"] if args.cpu_smoke else []) + (["--batch", str(args.batch)] if args.batch else [])
                    + (["--cudnn-benchmark"] if args.cudnn_benchmark else []))
    if args.cpu_smoke:
        args.device, args.size = "cpu", 32
        args.batch = args.batch or 4
        args.steps = min(args.steps, 8)
        args.timed_steps, args.gradcam_batch, args.max_batch_limit, args.workers = 3, 2, 16, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("gpu_check: no CUDA device; use --cpu-smoke on a CPU")
        from rxlib.profiles import run_config

        args.device, args.size = "cuda", 512
        args.batch = args.batch or run_config("paper").train["batch_size"]
        args.timed_steps, args.gradcam_batch, args.max_batch_limit = 30, 16, 4096
        args.workers = min(run_config("paper").train.get("num_workers", 8), max(1, (os.cpu_count() or 2) - 2))
    return args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.make_data:
        make_data(Path(args.make_data), args.cpu_smoke, args.data_workers)
        return 0
    args = _settle(args)
    if args.device == "cuda":  # the training loop leaves cuDNN's autotuner at torch's default (off)
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.section:  # one section inside run_isolated's subprocess
        state = json.loads(args.state_json)
        rows = MEASURE[args.section](args, args.section_cap, state)
        Path(args.rows_json).write_text(json.dumps(rows, default=float))
        return 0

    from rxlib.config import reports_dir

    out = Path(args.out) if args.out else reports_dir() / "benchmarks"
    sections = args.sections or list(SECTIONS)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"gpu_check: unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    info = {**machine_info(), "cudnn_benchmark": bool(args.cudnn_benchmark and args.device == "cuda")}
    start = time.perf_counter()
    rows: list[dict] = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        state: dict = {"data_dir": tmp}
        if "loader" in sections:
            start_data(state, args)
        try:
            for name in SECTIONS:
                if name not in sections:
                    continue
                left = args.total_cap - (time.perf_counter() - start) - RESERVE_S
                cap = min(SECTION_CAPS[name], left) if not args.cpu_smoke else left
                if cap < (SECTION_MIN_S.get(name, 10.0) if not args.cpu_smoke else 1.0):
                    rows.append({"section": name, "what": name, "status": "skipped",
                                 "note": f"total cap of {args.total_cap:.0f} s reached ({left:.0f} s left)"})
                    print(f"gpu_check: {name}: skipped, total cap reached", flush=True)
                    continue
                t0 = time.perf_counter()
                try:
                    got = (run_isolated(name, args, cap, state) if name in ISOLATED
                           else MEASURE[name](args, cap, state))
                except Exception as exc:  # recorded, printed in full, and the exit status says so
                    traceback.print_exc()
                    failed.append(name)
                    got = [{"section": name, "what": name, "status": "error",
                            "note": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}]
                if args.device == "cuda":  # give the next section (or the compile subprocess) the memory
                    gc.collect()
                    torch.cuda.empty_cache()
                for row in got:
                    row.setdefault("seconds", time.perf_counter() - t0)
                    row.setdefault("status", "ok")
                    rate = _fmt(row.get("images_per_s"), ".1f")
                    print(f"gpu_check: {row.get('section')} {row.get('what')}: {row.get('status') or 'ok'}"
                          f"{f' {rate} images/s' if rate else ''}; {row.get('note') or ''}", flush=True)
                rows.extend(got)
                write_report(rows, out, info, time.perf_counter() - start, partial=False)
        finally:
            proc = state.get("data_proc")
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            if state.get("data_log") is not None:
                state["data_log"].close()
    total = time.perf_counter() - start
    partial = any(r.get("status") == "skipped" and "total cap" in str(r.get("note")) for r in rows)
    csv, md = write_report(rows, out, info, total, partial)
    print(verdict(rows) if info.get("gpu") else "CPU smoke run: code paths only, no verdict on the GPU target.")
    print(f"gpu_check: {total:.0f} s; wrote {csv} and {md}")
    if failed:
        print(f"gpu_check: sections with errors: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
