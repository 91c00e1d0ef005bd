"""Write figures and tables under their fixed names in the figures folder, atomically.

Every paper item lives in one folder, :func:`rxlib.config.figures_dir` unless ``out_dir`` says otherwise:
figures as ``<name>.png`` and ``<name>.pdf``, tables as ``<name>.csv`` beside them, so that one folder
holds everything :mod:`rxlib.manifest` lists and the runner can check and checksum it in one place.
Names are the stems of :mod:`rxlib.manifest` (no folder, no extension).

Files are written under a temporary name and renamed into place, so an interrupted notebook never
leaves a half-written figure under its final name. PDF and SVG files are written without a creation
date, so re-running a notebook on the same data gives the same bytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from rxlib import config
from rxlib.io import atomic_path, write_csv
from rxlib.manifest import check_stem

if TYPE_CHECKING:  # matplotlib and pandas are only needed by the caller's objects
    import pandas as pd
    from matplotlib.figure import Figure

# Metadata keys that carry a timestamp, per format; None drops them from the file.
_NO_DATE_METADATA: dict[str, dict[str, None]] = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}


def _out_dir(out_dir: str | Path | None) -> Path:
    return Path(out_dir) if out_dir is not None else config.figures_dir()


def save_figure(
    fig: "Figure",
    name: str,
    *,
    out_dir: str | Path | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
    **savefig_kwargs: Any,
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format, atomically.

    Args:
        fig: A matplotlib figure (anything with ``savefig``).
        name: Output stem, for example ``"fig01_channels"``; no folder, no extension.
        out_dir: Target folder (created if needed); default :func:`rxlib.config.figures_dir`.
        formats: File formats; each must be one matplotlib can write.
        dpi: Resolution of raster formats.
        **savefig_kwargs: Passed to ``fig.savefig`` (default ``bbox_inches="tight"``).

    After the first file the figure keeps the layout that file was drawn with (its layout engine is
    switched off): the other formats and a later display show the same positions. A caller that adds to
    the figure afterwards (a colorbar, a title) and saves it again should lay it out anew first
    (``fig.set_layout_engine("constrained")``).

    Returns:
        The written paths, in the order of ``formats``.

    Raises:
        ValueError: ``name`` is not a bare stem, ``formats`` is empty or names an unsupported format.
    """
    check_stem(name)
    formats = tuple(formats)
    if not formats:
        raise ValueError(f"save_figure({name!r}): no formats given")
    supported = fig.canvas.get_supported_filetypes()
    for fmt in formats:
        if fmt not in supported:
            raise ValueError(
                f"save_figure({name!r}): unsupported format {fmt!r}; choose from {sorted(supported)}"
            )
    savefig_kwargs.setdefault("bbox_inches", "tight")
    directory = _out_dir(out_dir)
    written = []
    for fmt in formats:
        path = directory / f"{name}.{fmt}"
        kwargs = dict(savefig_kwargs)
        if fmt in _NO_DATE_METADATA and "metadata" not in kwargs:
            kwargs["metadata"] = _NO_DATE_METADATA[fmt]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, **kwargs)
        written.append(path)
        _freeze_layout(fig)
    return written


def _freeze_layout(fig: "Figure") -> None:
    """Keep the layout the first file was drawn with for the other formats and the notebook's own display:
    constrained layout otherwise solves it again at every draw (about a quarter of the time of saving and
    showing a figure of Grad-CAM panels, measured), and every format then shows the same positions."""
    if hasattr(fig, "get_layout_engine") and fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")


def save_table(
    frame: "pd.DataFrame",
    name: str,
    *,
    out_dir: str | Path | None = None,
    index: bool = False,
) -> Path:
    """Save ``frame`` as ``out_dir/name.csv``, atomically.

    Tables go to the figures folder beside the figures (see the module docstring).

    Args:
        frame: The table.
        name: Output stem, for example ``"table1_class_sets"``; no folder, no extension.
        out_dir: Target folder (created if needed); default :func:`rxlib.config.figures_dir`.
        index: Whether to write the index as a column (keep it ``False`` and make it a column if it
            carries information).

    Returns:
        The written path.

    Raises:
        ValueError: ``name`` is not a bare stem.
    """
    check_stem(name)
    return write_csv(_out_dir(out_dir) / f"{name}.csv", frame, index=index)
