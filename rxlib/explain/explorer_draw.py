"""Drawing of the Grad-CAM explorer: rows of titled panels, a colour bar with its scale, dimming outside cells.

One row shows one view: the image (RGB composite or one channel in grey), the Grad-CAM in a colour map, and
the CAM over the image; a vertical colour bar with ticks at 0, 0.5 and 1 closes the row. A title above each
panel says what it shows. Where a cell mask is given, the pixels outside the cells are dimmed in the image
and overlay panels (the CAM panel is left alone, so that it still reads against the colour bar). Two rows
stacked make the explorer's side-by-side comparison.

Everything is drawn with numpy and Pillow (its bundled font), not matplotlib, so that a redraw takes
milliseconds; matplotlib gives only the colour tables. The default colour map is ``viridis``, and the
explorer offers only colour-blind-safe maps (:data:`CAM_COLOUR_MAPS`).

Example:
    >>> import numpy as np
    >>> png = overlay_png(np.random.rand(6, 32, 32), np.random.rand(32, 32), panel_size=64)
    >>> png[:4]
    b'\\x89PNG'
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from rxlib.config import CHANNELS
from rxlib.plotting.composite import rgb_composite, stretch

#: The channel control's value that shows the RGB composite of all channels.
COMPOSITE = "composite"
#: Colour maps the explorer offers: perceptually uniform and readable with colour-vision deficiencies.
CAM_COLOUR_MAPS = ("viridis", "cividis", "magma", "inferno")
DEFAULT_CMAP = "viridis"
DEFAULT_ALPHA = 0.45
#: Brightness kept outside the cells when a cell mask dims them.
DIM_FACTOR = 0.3
TITLE_HEIGHT = 16  # pixels above each panel for its title
FONT_SIZE = 11
BAR_WIDTH = 12  # the colour bar's strip
BAR_LABELS = 30  # room right of the strip for its tick labels
ROW_GAP = 10  # white pixels between the rows of a comparison


def explorer_channels(n_channels: int = len(CHANNELS)) -> list[str]:
    """Values of the channel control: ``'composite'`` then ``'w1'``..``'wC'``."""
    return [COMPOSITE] + [f"w{i + 1}" for i in range(n_channels)]


@dataclass(frozen=True)
class PanelRow:
    """One row of the picture: a ``(C, H, W)`` image, its ``(H, W)`` CAM in [0, 1], the displayed channel,
    the titles of the three panels (image, CAM, overlay) and an optional ``(H, W)`` cell mask (True on
    cells; None: nothing is dimmed)."""

    image: np.ndarray
    cam: np.ndarray
    channel: str = COMPOSITE
    titles: tuple[str, str, str] = ("image", "Grad-CAM", "overlay")
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class RowLayout:
    """Where things are in one row, in pixels: ``panels`` are the ``(left, top)`` corners of the image,
    CAM and overlay panels (each ``size`` square), ``bar`` that of the colour bar's strip."""

    size: int
    gap: int
    panels: tuple[tuple[int, int], ...]
    bar: tuple[int, int]
    width: int
    height: int


def row_layout(panel_size: int = 256, gap: int = 4) -> RowLayout:
    """The layout of one row: three panels below their titles, then the colour bar and its labels."""
    panels = tuple((i * (panel_size + gap), TITLE_HEIGHT) for i in range(3))
    bar = (3 * (panel_size + gap) + 2, TITLE_HEIGHT)
    return RowLayout(size=panel_size, gap=gap, panels=panels, bar=bar, width=bar[0] + BAR_WIDTH + BAR_LABELS,
                     height=TITLE_HEIGHT + panel_size)


@lru_cache(maxsize=8)
def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled font: the same pixels on every machine


@lru_cache(maxsize=16)
def colour_table(cmap: str) -> np.ndarray:
    """``(256, 3)`` RGB in [0, 1] of a matplotlib colour map (a KeyError lists the names it knows)."""
    from matplotlib import colormaps  # only the colour table; no figure is made

    if cmap not in colormaps:
        raise KeyError(f"unknown colour map {cmap!r}; the explorer offers {list(CAM_COLOUR_MAPS)}")
    return colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]


def _colour_map(values: np.ndarray, cmap: str) -> np.ndarray:
    index = np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.intp)
    return colour_table(cmap)[index]


def _to_pil(rgb: np.ndarray, size: int | None = None):
    """A Pillow image of ``rgb`` in [0, 1]; resized to ``size`` x ``size`` when given."""
    from PIL import Image

    picture = Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8), mode="RGB")
    if size is not None and picture.size != (size, size):
        # nearest when enlarging keeps the pixels of a small image honest; box when shrinking
        resample = Image.Resampling.NEAREST if size >= max(picture.size) else Image.Resampling.BOX
        picture = picture.resize((size, size), resample)
    return picture


def _fit(text: str, width: int) -> str:
    """``text``, cut with an ellipsis so that it fits ``width`` pixels in the title font."""
    font = _font()
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _base(image: np.ndarray, channel: str) -> np.ndarray:
    if channel == COMPOSITE:
        return rgb_composite(image)
    return np.repeat(stretch(image[int(channel[1:]) - 1])[..., None], 3, axis=2)


def _check_row(row: PanelRow) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    image = row.image.detach().cpu().numpy() if isinstance(row.image, torch.Tensor) else row.image
    image = np.asarray(image, dtype=np.float64)
    cam = np.asarray(row.cam, dtype=np.float64)
    if image.ndim != 3 or cam.shape != image.shape[1:]:
        raise ValueError(f"need a (C, H, W) image and an (H, W) cam, got {image.shape} and {cam.shape}")
    channels = explorer_channels(image.shape[0])
    if row.channel not in channels:
        raise ValueError(f"unknown channel {row.channel!r}; expected one of {channels}")
    mask = None if row.mask is None else np.asarray(row.mask) != 0
    if mask is not None and mask.shape != cam.shape:
        raise ValueError(f"cell mask of shape {mask.shape} does not match the image's {cam.shape}")
    return image, cam, mask


@lru_cache(maxsize=16)
def _colour_bar(cmap: str, height: int):
    """The colour bar: a strip from 1 (top) to 0 (bottom) with ticks and labels at 0, 0.5 and 1 (cached:
    callers paste it and never change it)."""
    from PIL import Image, ImageDraw

    values = np.linspace(1.0, 0.0, height)[:, None].repeat(BAR_WIDTH, axis=1)
    bar = Image.new("RGB", (BAR_WIDTH + BAR_LABELS, height), (255, 255, 255))
    bar.paste(_to_pil(_colour_map(values, cmap)), (0, 0))
    draw = ImageDraw.Draw(bar)
    draw.rectangle((0, 0, BAR_WIDTH - 1, height - 1), outline=(0, 0, 0))
    for value, label in ((1.0, "1"), (0.5, "0.5"), (0.0, "0")):
        y = round((1.0 - value) * (height - 1))
        draw.line((BAR_WIDTH, y, BAR_WIDTH + 3, y), fill=(0, 0, 0))
        anchor = "lt" if value == 1.0 else ("lb" if value == 0.0 else "lm")
        draw.text((BAR_WIDTH + 5, y), label, fill=(0, 0, 0), font=_font(), anchor=anchor)
    return bar


def draw_row(row: PanelRow, *, alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP, panel_size: int = 256,
             gap: int = 4):
    """One row as a Pillow image (:func:`row_layout`): titled image, CAM and overlay panels, the colour bar.

    Raises:
        ValueError: shapes that do not match, an unknown channel, or bad drawing options.
        KeyError: an unknown colour map.
    """
    from PIL import Image, ImageDraw

    if not 0.0 <= alpha <= 1.0 or panel_size < 8 or gap < 0:
        raise ValueError(f"bad drawing options: alpha={alpha}, panel_size={panel_size}, gap={gap}")
    image, cam, mask = _check_row(row)
    base, heat = _base(image, row.channel), _colour_map(cam, cmap)
    overlay = (1.0 - alpha) * base + alpha * heat
    if mask is not None:  # outside the cells: dimmed in the image and the overlay
        dim = np.where(mask, 1.0, DIM_FACTOR)[..., None]
        base, overlay = base * dim, overlay * dim
    layout = row_layout(panel_size, gap)
    sheet = Image.new("RGB", (layout.width, layout.height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for (x, y), rgb, title in zip(layout.panels, (base, heat, overlay), row.titles):
        sheet.paste(_to_pil(rgb, panel_size), (x, y))
        draw.text((x + 1, y - 2), _fit(title, panel_size - 2), fill=(0, 0, 0), font=_font(), anchor="ld")
    sheet.paste(_colour_bar(cmap, panel_size), layout.bar)
    draw.text((layout.bar[0], layout.bar[1] - 2), "CAM", fill=(0, 0, 0), font=_font(), anchor="ld")
    return sheet


def rows_png(rows: Sequence[PanelRow], *, alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP,
             panel_size: int = 256, gap: int = 4) -> bytes:
    """PNG bytes of ``rows`` (:func:`draw_row` each) stacked top to bottom, :data:`ROW_GAP` apart."""
    from PIL import Image

    if not rows:
        raise ValueError("no rows to draw")
    drawn = [draw_row(row, alpha=alpha, cmap=cmap, panel_size=panel_size, gap=gap) for row in rows]
    height = sum(d.height for d in drawn) + ROW_GAP * (len(drawn) - 1)
    sheet = Image.new("RGB", (drawn[0].width, height), (255, 255, 255))
    for i, picture in enumerate(drawn):
        sheet.paste(picture, (0, i * (picture.height + ROW_GAP)))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", compress_level=1)  # fast: the picture is redrawn on every control
    return buffer.getvalue()


def overlay_png(image: np.ndarray | torch.Tensor, cam: np.ndarray, channel: str = COMPOSITE, *,
                alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP, panel_size: int = 256, gap: int = 4,
                mask: np.ndarray | None = None, titles: tuple[str, str, str] | None = None) -> bytes:
    """PNG bytes of one row: the image (composite or one channel in grey), the CAM, the overlay, a colour bar.

    Args:
        image: ``(C, H, W)`` stack (any value range; each channel is stretched to its 1-99.5 percentiles).
        cam: ``(H, W)`` map in [0, 1] at the image's resolution.
        channel: ``'composite'`` or ``'w1'``..``'wC'``.
        alpha: opacity of the CAM over the image.
        cmap: matplotlib colour map of the CAM (the explorer offers :data:`CAM_COLOUR_MAPS`).
        panel_size: side of each square panel in pixels.
        gap: white pixels between panels.
        mask: ``(H, W)`` cell mask; pixels outside it are dimmed in the image and overlay panels.
        titles: the three panels' titles (default ``'image'``, ``'Grad-CAM'``, ``'overlay'``).

    Raises:
        ValueError: unknown channel, shapes that do not match, or bad sizes.
        KeyError: an unknown colour map.
    """
    row = PanelRow(image=image, cam=cam, channel=channel, mask=mask,
                   titles=titles if titles is not None else PanelRow.titles)
    return rows_png([row], alpha=alpha, cmap=cmap, panel_size=panel_size, gap=gap)
