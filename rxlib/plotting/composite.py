"""Turning 6-channel fluorescence images into pictures: per-channel stretch and an RGB composite."""
from __future__ import annotations

import numpy as np

#: One colour per channel (w1..w6) for the composite, after the RxRx1 convention
#: (Hoechst blue, ConA green, Phalloidin red, Syto14 cyan, MitoTracker magenta, WGA yellow).
CHANNEL_COLOURS = np.array([
    [19, 0, 249], [42, 255, 31], [255, 0, 25], [45, 255, 252], [250, 0, 253], [254, 255, 40],
], dtype=np.float64) / 255.0


def stretch(channel: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """Rescale one channel to [0, 1] between its ``low`` and ``high`` percentiles."""
    channel = np.asarray(channel, dtype=np.float64)
    lo, hi = np.percentile(channel, [low, high])
    if hi <= lo:
        return np.zeros_like(channel)
    return np.clip((channel - lo) / (hi - lo), 0.0, 1.0)


def rgb_composite(stack: np.ndarray, channels: tuple[int, ...] | None = None) -> np.ndarray:
    """An (H, W, 3) float image in [0, 1] from a (C, H, W) stack: each channel stretched, tinted
    with its colour and summed; each RGB component is divided by the sum of the colours' weights
    on it, so that a pixel saturated in every channel is white.

    Args:
        channels: 0-based channels to include (default all).
    """
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] > len(CHANNEL_COLOURS):
        raise ValueError(f"expected a (C<=6, H, W) stack, got shape {stack.shape}")
    channels = tuple(range(stack.shape[0])) if channels is None else tuple(channels)
    colours = CHANNEL_COLOURS[list(channels)]
    rgb = np.einsum("chw,ck->hwk", np.stack([stretch(stack[c]) for c in channels]), colours)
    return np.clip(rgb / np.maximum(colours.sum(axis=0), 1e-9), 0.0, 1.0)
