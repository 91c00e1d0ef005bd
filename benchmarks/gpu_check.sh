#!/usr/bin/env bash
# The GPU readiness check of the paper profile on one H100/H200, in at most 8 minutes.
#
#   bash benchmarks/gpu_check.sh                 # writes reports/benchmarks/gpu_check.{csv,md}
#   bash benchmarks/gpu_check.sh --cpu-smoke --out /tmp/x   # the same code paths on a CPU, in seconds
#
# The python module caps every section and the whole run (--total-cap, 450 s) and writes its results
# after each section; `timeout` is the backstop. Extra arguments go to `python3 -m benchmarks.gpu_check`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The lent GPU machine has torch, pandas, Pillow and scikit-image but not every pure-Python dependency of
# rxlib (tqdm, filelock, pandera, ...). Prepare them here with `python3 -m pip install --target .gl tqdm
# filelock pandera latex2mathml` (a git-ignored folder, for the device's Python version) and carry `.gl`.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}${PWD:+:$PWD/.gl}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec timeout --kill-after=10 480 python3 -m benchmarks.gpu_check --total-cap 450 "$@"
