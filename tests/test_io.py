import os

import pandas as pd
import pytest

from rxlib.io import atomic_path, write_csv


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_finished_files_get_the_usual_permissions(tmp_path):
    write_csv(tmp_path / "a.csv", pd.DataFrame({"a": [1]}))
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "a.csv").st_mode & 0o777 == 0o666 & ~mask
