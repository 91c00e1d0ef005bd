"""A spurious, label-tied cue added on the fly to the sites of any data set: the cheating model's data.

Grad-CAMO (Ma et al. 2024) warns that a model can score well by attending to something other than the
cells. To show that the explanations catch this, notebook 07 trains a "cheating" model on the training
sites of the very data set it is compared on, each carrying a faint grating in the background of one
channel whose orientation encodes the site's class; held-out sites never carry it. Because the cue is
drawn when an item is read, it works for the real RxRx1 as well as for the synthetic set, and the clean
and the cheating model see the same sites.

The grating is the synthetic generator's (:func:`rxlib.synth.render.cue_pattern`: period 8 pixels,
orientation ``pi * rank / n_ranks``) at ``amplitude`` grey levels, added to the background pixels of
``channel``: those below the site's own Otsu threshold of that channel (cells are brighter than the
background in every RxRx1 stain). Pixels are clipped to 0..255, so the cue is applied to the stored
uint8 image before normalisation and augmentation, as if the microscope had recorded it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Grey levels of the cue grating. The generator's default (6) is learnt only slowly by the tiny
#: DenseNet of the smoke profile; a clearly visible cue makes the cheating model cheat within the
#: notebook's budget.
CUE_AMPLITUDE = 24.0
#: The channel carrying the cue (1-based): w6, WGA (Golgi, plasma membrane), as in the generator.
CUE_CHANNEL = 6


@dataclass(frozen=True)
class SpuriousCue:
    """A class-coded background grating.

    Attributes:
        classes: the class ids that get a cue, in rank order (rank = position); other labels get none.
        amplitude: grey levels of the grating.
        channel: 1-based channel it is drawn in.
    """

    classes: tuple[int, ...]
    amplitude: float = CUE_AMPLITUDE
    channel: int = CUE_CHANNEL
    _rank: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.classes:
            raise ValueError("a spurious cue needs at least one class")
        if not 1 <= self.channel <= 6:
            raise ValueError(f"cue channel must be 1..6, got {self.channel}")
        if self.amplitude <= 0:
            raise ValueError(f"cue amplitude must be positive, got {self.amplitude}")
        object.__setattr__(self, "_rank", {int(c): i for i, c in enumerate(self.classes)})

    @classmethod
    def for_labels(cls, labels: Sequence[int] | np.ndarray, **kwargs) -> SpuriousCue:
        """The cue of the classes present in ``labels`` (unknown labels, -1, excluded), sorted."""
        present = sorted({int(v) for v in np.asarray(labels).ravel() if int(v) >= 0})
        return cls(tuple(present), **kwargs)

    def pattern(self, size: int, label: int) -> np.ndarray | None:
        """The ``(size, size)`` grating of ``label`` in [0, 1], or None for a class without a cue."""
        from rxlib.synth.render import cue_pattern

        rank = self._rank.get(int(label))
        return None if rank is None else cue_pattern(size, rank, len(self.classes))

    def background(self, channel_image: np.ndarray) -> np.ndarray:
        """Boolean mask of the pixels below the image's Otsu threshold (all pixels of a flat image)."""
        from rxlib.segmentation import otsu_threshold

        if channel_image.max() == channel_image.min():
            return np.ones(channel_image.shape, dtype=bool)
        return channel_image < otsu_threshold(channel_image)

    def apply(self, raw: np.ndarray, label: int) -> np.ndarray:
        """A copy of the uint8 site ``raw`` (C, H, W) with the cue of ``label`` in its background.

        Raises:
            ValueError: ``raw`` is not a square (C, H, W) uint8 stack holding the cue channel.
        """
        raw = np.asarray(raw)
        if raw.ndim != 3 or raw.dtype != np.uint8 or raw.shape[1] != raw.shape[2] or raw.shape[0] < self.channel:
            raise ValueError(f"expected a square (C, H, W) uint8 site with channel w{self.channel}, got "
                             f"{raw.dtype} {raw.shape}")
        grating = self.pattern(raw.shape[1], label)
        out = raw.copy()  # never a view of the caller's (or an in-memory store's) pixels
        if grating is None:
            return out
        c = self.channel - 1
        mask = self.background(raw[c])
        value = raw[c].astype(np.float32) + np.where(mask, self.amplitude * grating, 0.0)
        out[c] = np.clip(np.rint(value), 0, 255).astype(np.uint8)
        return out


__all__ = ["CUE_AMPLITUDE", "CUE_CHANNEL", "SpuriousCue"]
