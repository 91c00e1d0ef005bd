"""Colours shared by every figure: the Okabe-Ito palette for categories, viridis for magnitudes.

Okabe & Ito (2008), "Color Universal Design": eight colours that stay distinct under the common
colour-vision deficiencies. Maps of a magnitude (CAMs, densities) use viridis, which is perceptually
uniform and readable in grey; signed values use a diverging map centred on 0.
"""
from __future__ import annotations

#: Okabe-Ito, black last (used for reference lines, not for a category).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442", "#000000")
#: The seven coloured Okabe-Ito entries, in the order categories take them.
CATEGORY_COLOURS = OKABE_ITO[:7]
#: Colour map of a non-negative magnitude (CAM, attention).
MAGNITUDE_CMAP = "viridis"
#: Neutral grey for "the rest" (e.g. non-junk classes in Figures 7-8).
GREY = "0.65"


def category_colours(n: int) -> list[str]:
    """``n`` colour-blind-safe category colours (Okabe-Ito; viridis samples beyond seven)."""
    if n <= len(CATEGORY_COLOURS):
        return list(CATEGORY_COLOURS[:n])
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    return [to_hex(cmap(i / max(n - 1, 1))) for i in range(n)]
