"""Run every benchmark: loading (PNG vs Pillow floor vs cache), training (CPU; GPU when present),
Grad-CAM (ours vs pytorch-grad-cam). CSVs go to ``rxlib.config.reports_dir()/benchmarks/``.

    python -m benchmarks [--quick] [--out DIR]        # or: python benchmarks/run_all.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for the test")
    parser.add_argument("--out", default=None, help="output folder (default reports/benchmarks)")
    parser.add_argument("--skip-gradcam", action="store_true", help="leave out Grad-CAM (needs grad-cam installed)")
    args = parser.parse_args(argv)
    import bench_loading
    import bench_training

    extra = ["--quick"] if args.quick else []
    out = ["--out", args.out] if args.out else []
    start = time.perf_counter()
    bench_loading.main(extra + out)
    bench_training.main(extra + out)
    if not args.skip_gradcam:
        import bench_gradcam

        size = ["--size", "32", "--batch", "2", "--repeats", "1", "--n-classes", "20"] if args.quick else []
        csv = ["--out", str(Path(args.out) / "gradcam.csv")] if args.out else []
        bench_gradcam.main(size + csv)
    print(f"benchmarks done in {time.perf_counter() - start:.0f} s\n")
    from common import summary_markdown

    print(summary_markdown(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
