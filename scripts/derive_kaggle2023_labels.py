"""Derive the table that maps the 2023 Kaggle release's siRNA names to RxRx1 class ids.

The 2019 release labels wells with integers in the 1139-class convention (0-1107 treatments,
1108-1137 positive controls, 1138 the negative control). The 2023 release renamed them to strings
(``sirna_250``, ``UNTREATED``) in an unrelated order. Both releases share ``id_code`` for every well
but two, so joining them on ``id_code`` gives the one-to-one map. This script does that join and
writes ``rxlib/data/kaggle2023_labels.csv``; ``tests/data/test_labels.py`` re-derives it from the
real files and checks that the shipped table agrees.

Usage: python scripts/derive_kaggle2023_labels.py [RXRX1_DIR]   (default ../shared/rxrx1)
"""
from __future__ import annotations

import sys
from pathlib import Path

from rxlib.config import shared_rxrx1_dir
from rxlib.data.labels import LABEL_TABLE_PATH, derive_kaggle2023_label_table
from rxlib.io import write_csv


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else shared_rxrx1_dir()
    table = derive_kaggle2023_label_table(root / "kaggle-2019", root / "kaggle-2023")
    write_csv(LABEL_TABLE_PATH, table)
    print(f"wrote {len(table)} rows to {LABEL_TABLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
