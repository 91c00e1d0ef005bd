"""Classical segmentation of nuclei (w1, Hoechst) and of cells grown from them.

Used to count nuclei per field (the realism check of the synthetic data) and, for real images
without ground truth, to get cell masks. Otsu's threshold on a lightly smoothed channel, then
connected components; objects smaller than ``min_area`` pixels are dropped as debris. Touching
nuclei are not split (no watershed), so counts in crowded fields are a lower bound.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def otsu_threshold(image: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the grey level that maximises the between-class variance."""
    values = np.asarray(image, dtype=np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_lo = np.cumsum(hist)
    weight_hi = weight_lo[-1] - weight_lo
    sum_lo = np.cumsum(hist * centres)
    mean_lo = sum_lo / np.maximum(weight_lo, 1)
    mean_hi = (sum_lo[-1] - sum_lo) / np.maximum(weight_hi, 1)
    between = weight_lo * weight_hi * (mean_lo - mean_hi) ** 2
    return float(centres[int(np.argmax(between))])


def segment_nuclei(nuclei: np.ndarray, *, sigma: float = 1.0, min_area: int = 8) -> np.ndarray:
    """Label image (int32, 0 = background) of the nuclei in a Hoechst channel."""
    smooth = ndimage.gaussian_filter(np.asarray(nuclei, dtype=np.float32), sigma)
    foreground = smooth > otsu_threshold(smooth)
    labels, n = ndimage.label(foreground)
    if n == 0:
        return labels.astype(np.int32)
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = areas >= min_area
    labels[~keep[labels]] = 0
    relabelled, _ = ndimage.label(labels > 0)
    return relabelled.astype(np.int32)


def count_nuclei(nuclei: np.ndarray, **kwargs) -> int:
    """Number of nuclei found by :func:`segment_nuclei`."""
    return int(segment_nuclei(nuclei, **kwargs).max())


def grow_cells(nuclei_labels: np.ndarray, cytoplasm: np.ndarray, *, max_distance: float = 20.0) -> np.ndarray:
    """Grow nuclei into cells: each foreground pixel of ``cytoplasm`` (Otsu) within ``max_distance``
    of a nucleus joins the nearest one. Returns a label image with the nuclei's labels."""
    distance, (rows, cols) = ndimage.distance_transform_edt(nuclei_labels == 0, return_indices=True)
    nearest = nuclei_labels[rows, cols]
    smooth = ndimage.gaussian_filter(np.asarray(cytoplasm, dtype=np.float32), 1.0)
    foreground = (smooth > otsu_threshold(smooth)) | (nuclei_labels > 0)
    cells = np.where(foreground & (distance <= max_distance), nearest, 0)
    return cells.astype(np.int32)
