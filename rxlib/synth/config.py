"""Parameters of the synthetic RxRx1: the :class:`SynthConfig` dataclass, the named profiles and the
calibration targets measured on real RxRx1 images.

Everything here is plain data; nothing is computed on import beyond building a few small tuples.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rxlib.config import CELL_TYPES, N_CHANNELS

#: Inner wells of a 16x24 plate, the ones RxRx1 images (rows B-O, columns 02-23), row-major.
INNER_WELLS: tuple[str, ...] = tuple(f"{row}{col:02d}" for row in "BCDEFGHIJKLMNO" for col in range(2, 24))

# ---------------------------------------------------------------------------------------------
# Calibration targets, measured once with a throwaway script on the 180 real 512x512 PNGs of
# ../shared/rxrx1/kaggle-2023/{train,test} (all from well B02, the negative control; experiments
# HEPG2-01, HEPG2-08, HUVEC-01, RPE-01, U2OS-01; w5/w6 exist for site 1 only).
# Per cell type and channel w1..w6: mean pixel value over sites (HEPG2 pools HEPG2-01 and HEPG2-08,
# whose brightness differs about five-fold: an experiment batch effect, reproduced by the gains).
REAL_MEAN: dict[str, tuple[float, ...]] = {
    "HEPG2": (38.4, 27.2, 40.0, 38.2, 67.4, 36.4),
    "HUVEC": (5.4, 22.8, 11.9, 13.0, 2.4, 15.7),
    "RPE": (5.5, 12.9, 18.1, 10.5, 5.2, 16.4),
    "U2OS": (10.4, 13.1, 12.2, 9.7, 2.9, 17.4),
}
#: Spread (standard deviation over sites) of the per-site mean pixel value, same sources.
REAL_MEAN_SPREAD: dict[str, tuple[float, ...]] = {
    "HEPG2": (26.8, 5.8, 20.5, 19.3, 33.1, 16.8),
    "HUVEC": (0.3, 1.5, 0.5, 0.8, 0.1, 0.9),
    "RPE": (0.5, 2.5, 3.3, 0.8, 0.6, 1.1),
    "U2OS": (1.5, 1.7, 1.8, 1.2, 0.3, 1.3),
}
#: Mean over sites of the per-image standard deviation of pixel values, same sources.
REAL_STD: dict[str, tuple[float, ...]] = {
    "HEPG2": (27.4, 11.3, 17.3, 14.3, 31.5, 13.8),
    "HUVEC": (6.8, 17.6, 4.7, 9.6, 2.4, 7.5),
    "RPE": (5.0, 7.7, 7.6, 5.4, 3.7, 6.3),
    "U2OS": (11.9, 8.1, 5.0, 5.3, 2.4, 8.1),
}
#: 1st percentile of pixel values (taken as the background level), same sources.
REAL_P1: dict[str, tuple[float, ...]] = {
    "HEPG2": (5.2, 7.6, 12.3, 11.4, 16.7, 11.7),
    "HUVEC": (1.0, 6.8, 3.2, 3.4, 0.8, 5.8),
    "RPE": (1.0, 2.2, 3.2, 1.8, 0.2, 3.8),
    "U2OS": (1.2, 3.0, 3.2, 1.9, 1.0, 3.8),
}
#: Median Otsu foreground fraction per site (``rxlib.segmentation.otsu_foreground``, smoothed with sigma 1)
#: per cell type and channel w1..w6, same sources: the ``real`` column of the ``foreground`` rows of the
#: realism table (``python -m rxlib.data.realism ../shared/rxrx1/kaggle-2023 SYNTH``). The realistic
#: profile calibrates each channel's spatial spread to it (``SynthConfig.fit_foreground``).
REAL_FOREGROUND: dict[str, tuple[float, ...]] = {
    "HEPG2": (0.356, 0.374, 0.339, 0.384, 0.342, 0.386),
    "HUVEC": (0.170, 0.231, 0.319, 0.287, 0.094, 0.236),
    "RPE": (0.175, 0.273, 0.370, 0.320, 0.214, 0.357),
    "U2OS": (0.274, 0.147, 0.291, 0.220, 0.094, 0.365),
}
#: Per channel w1..w6, the largest difference of that median between two real batches of one cell type
#: (experiments, else plates): the realism table's ``foreground`` thresholds, same sources.
REAL_FOREGROUND_BATCH_SPREAD: tuple[float, ...] = (0.060, 0.113, 0.085, 0.164, 0.243, 0.114)
#: Nuclei per 512x512 field (w1 foreground area / median nucleus area): HEPG2-01 ~700 (very
#: crowded, clumped), HEPG2-08 ~330, HUVEC 120 +- 11, RPE 94 +- 10, U2OS 144 +- 18.
REAL_NUCLEI_PER_FIELD: dict[str, float] = {"HEPG2": 330.0, "HUVEC": 120.0, "RPE": 94.0, "U2OS": 144.0}
#: Median nucleus area in pixels at the real scale: HEPG2 190-380, HUVEC 475, RPE 619, U2OS 576.
REAL_NUCLEUS_AREA: dict[str, float] = {"HEPG2": 300.0, "HUVEC": 475.0, "RPE": 619.0, "U2OS": 576.0}


@dataclass(frozen=True)
class CellTypeShape:
    """Morphology of one cell type, in pixels of a real 512x512 RxRx1 field.

    Attributes:
        nuclei_per_field: mean number of cells per 512x512 field.
        nucleus_radius: radius of a round nucleus of the same area.
        nucleus_elongation: major/minor axis ratio of the nucleus.
        cell_radius: radius of a round cell of the same area.
        cell_elongation: major/minor axis ratio of the cell body.
        irregularity: amplitude of the random radial harmonics of the outline (0 = ellipse).
        clustered: whether cells grow in clumps (HEPG2) rather than spread evenly.
    """

    nuclei_per_field: float
    nucleus_radius: float
    nucleus_elongation: float
    cell_radius: float
    cell_elongation: float
    irregularity: float
    clustered: bool


#: HEPG2 small and crowded in clumps, HUVEC elongated, RPE large and polygonal, U2OS large and
#: irregular. Nucleus radii from REAL_NUCLEUS_AREA (r = sqrt(area / pi)).
CELL_TYPE_SHAPES: dict[str, CellTypeShape] = {
    "HEPG2": CellTypeShape(330.0, 9.8, 1.15, 15.0, 1.25, 0.12, True),
    "HUVEC": CellTypeShape(120.0, 12.3, 1.45, 27.0, 2.4, 0.10, False),
    "RPE": CellTypeShape(94.0, 14.0, 1.15, 32.0, 1.2, 0.08, False),
    "U2OS": CellTypeShape(144.0, 13.5, 1.3, 27.0, 1.5, 0.28, False),
}


@dataclass(frozen=True)
class SynthConfig:
    """Every parameter of a synthetic RxRx1 set. Use :data:`PROFILES` and ``dataclasses.replace``.

    Attributes:
        image_size: height = width of every image in pixels.
        cell_scale: linear size of cells relative to a real 512x512 RxRx1 field (1.0 = real pixel
            size; 0.4 draws cells at 40% of their real size, so a 64x64 image holds as many cells as
            a 160x160 crop of a real field).
        n_treatments: treatment class ids ``0..n_treatments-1``, junk classes included.
        n_junk: how many treatment class ids are junk classes (no sample in any split).
        n_positive_controls: positive-control class ids follow the treatments.
        experiments: ``(cell_type, n_train, n_test)`` per cell type; train experiments are numbered
            first (``HEPG2-01``...), then test experiments, as in RxRx1.
        n_plates: plates per experiment.
        n_plate_groups: treatments are split into this many disjoint groups; each plate carries one
            group (RxRx1: 4 groups of 277).
        treatment_replicates: wells per treatment on a plate that carries it.
        positive_control_replicates: wells per positive control on every plate.
        negative_control_wells: negative-control wells per plate.
        n_sites: imaging sites per well (1 or 2).
        treatment_strength: (low, high) of the uniform strength of treatment phenotypes.
        treatment_penetrance: (low, high) of the fraction of cells showing the phenotype.
        positive_strength: (low, high) strength of positive-control phenotypes.
        positive_penetrance: penetrance of positive controls.
        pair_fraction: fraction of treatments (beyond the first one per atomic effect) whose phenotype
            combines two effects in two channels.
        density_jitter: log-normal sigma of the per-site number of cells.
        exp_gain_sigma: log-normal sigma of the experiment brightness shared by all channels (train).
        exp_channel_gain_sigma: log-normal sigma of the per-channel experiment gain (train).
        test_gain_shift: shift of the log experiment gain of test experiments.
        test_gain_widen: factor applied to both experiment sigmas for test experiments.
        offset_sigma: sigma of the per-channel experiment offset in grey levels (train; widened too).
        plate_gain_sigma: log-normal sigma of the per-channel plate gain.
        well_gain_sigma: log-normal sigma of the per-channel well gain.
        vignette: (low, high) of the illumination fall-off from centre to corner.
        illumination_tilt: maximum linear illumination gradient across the field.
        photons_per_level: photo-electrons per grey level (shot noise std = sqrt(v / this)).
        read_noise: Gaussian read noise in grey levels.
        cue_amplitude: grey levels of the spurious background pattern (``spurious_cue=True``).
        cue_channel: channel (1-6) carrying the spurious pattern.
        cue_probability: probability that a training site carries the cue.
        calibration_sites: negative-control sites rendered per cell type to calibrate intensities.
        contrast_gamma: (low, high) range searched for the per-channel contrast exponent that gives
            negative controls the real coefficient of variation (lower = flatter images, and weaker
            intensity phenotypes in pixel values).
        texture: amplitude of the multi-scale texture over the cells (chromatin, granular cytoplasm;
            0 = flat fills as in ``smoke``).
        clustering: sigma of each site's log-normal cell-density field (0 = cells spread evenly or,
            for HEPG2, in colonies); with ``density_jitter`` it makes cell coverage vary by site.
        psf_sigma: Gaussian point-spread function of the optics, in pixels (0 = none).
        haze: out-of-focus light, as a fraction of the signal blurred over ~12 pixels (0 = none).
        nucleus_scale: multiplier of the nucleus radius per cell type, in the order of
            ``rxlib.config.CELL_TYPES`` (1 = ``CELL_TYPE_SHAPES``).
        density_scale: multiplier of the number of cells per field per cell type, in the order of
            ``rxlib.config.CELL_TYPES`` (1 = ``CELL_TYPE_SHAPES``).
        fit_foreground: calibrate each channel's spatial spread too, so that its Otsu foreground
            fraction matches the real one (:data:`REAL_FOREGROUND`; see
            :func:`rxlib.synth.writer.calibrate` and :func:`rxlib.synth.render.spread_stain`).
        nucleus_jitter: log-normal sigma of each nucleus' own radius factor per cell type, in the order of
            ``rxlib.config.CELL_TYPES`` (0.10 = the original draw): how much nucleus sizes vary.
        exp_gain_channel_scale: per channel w1..w6, the factor applied to the experiment's log gain (shared,
            per-channel and test shift together; 1 = as drawn): how strongly each stain follows the batch.

    The last nine were added after sets had been written; at their defaults they are left out of
    :meth:`to_dict` (and so of ``params.json``), so that sets made before keep their identity.
    """

    image_size: int = 64
    cell_scale: float = 0.4
    n_treatments: int = 20
    n_junk: int = 4
    n_positive_controls: int = 2
    experiments: tuple[tuple[str, int, int], ...] = (("HEPG2", 2, 1), ("HUVEC", 2, 1), ("RPE", 2, 1), ("U2OS", 2, 1))
    n_plates: int = 2
    n_plate_groups: int = 1
    treatment_replicates: int = 2
    positive_control_replicates: int = 1
    negative_control_wells: int = 2
    n_sites: int = 2
    treatment_strength: tuple[float, float] = (0.8, 1.4)
    treatment_penetrance: tuple[float, float] = (0.6, 0.9)
    positive_strength: tuple[float, float] = (1.6, 2.2)
    positive_penetrance: float = 0.95
    pair_fraction: float = 1.0
    density_jitter: float = 0.15
    exp_gain_sigma: float = 0.35
    exp_channel_gain_sigma: float = 0.15
    test_gain_shift: float = 0.25
    test_gain_widen: float = 1.6
    offset_sigma: float = 1.0
    plate_gain_sigma: float = 0.07
    well_gain_sigma: float = 0.04
    vignette: tuple[float, float] = (0.05, 0.25)
    illumination_tilt: float = 0.08
    photons_per_level: float = 4.0
    read_noise: float = 0.7
    cue_amplitude: float = 6.0
    cue_channel: int = 6
    cue_probability: float = 1.0
    calibration_sites: int = 16
    contrast_gamma: tuple[float, float] = (0.5, 1.5)
    texture: float = 0.0
    clustering: float = 0.0
    psf_sigma: float = 0.0
    haze: float = 0.0
    nucleus_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    density_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    fit_foreground: bool = False
    nucleus_jitter: tuple[float, ...] = (0.10, 0.10, 0.10, 0.10)
    exp_gain_channel_scale: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

    # -- derived ------------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        """All class ids: treatments (junk included), positive controls and the negative control."""
        return self.n_treatments + self.n_positive_controls + 1

    @property
    def negative_control_id(self) -> int:
        return self.n_treatments + self.n_positive_controls

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); fields of :data:`OPTIONAL_FIELDS` at their default
        are left out."""
        values = dataclasses.asdict(self)
        for name, default in OPTIONAL_FIELDS.items():
            if _tupleify(_listify(values[name])) == default:
                del values[name]
        return _listify(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown SynthConfig parameter(s): {', '.join(unknown)}")
        return cls(**{k: _tupleify(v) for k, v in values.items()}).validated()

    def validated(self) -> SynthConfig:
        """Return self after checking every value; raise ``ValueError`` naming the bad one."""
        self._check_layout()
        self._check_distributions()
        return self

    def _check_layout(self) -> None:
        """Image size, classes, experiments, plates, wells and sites; that a plate holds its wells."""
        _check(isinstance(self.image_size, int) and 16 <= self.image_size <= 4096,
               f"image_size must be an int in 16..4096, got {self.image_size!r}")
        _check(0.05 <= float(self.cell_scale) <= 4.0, f"cell_scale must be in 0.05..4, got {self.cell_scale!r}")
        _check(isinstance(self.n_treatments, int) and self.n_treatments >= 1,
               f"n_treatments must be an int >= 1, got {self.n_treatments!r}")
        _check(isinstance(self.n_junk, int) and 0 <= self.n_junk < self.n_treatments,
               f"n_junk must be an int in 0..n_treatments-1 ({self.n_treatments - 1}), got {self.n_junk!r}")
        _check(isinstance(self.n_positive_controls, int) and self.n_positive_controls >= 0,
               f"n_positive_controls must be an int >= 0, got {self.n_positive_controls!r}")
        _check(len(self.experiments) >= 1, "experiments must name at least one cell type")
        seen = set()
        for entry in self.experiments:
            _check(len(entry) == 3, f"experiments entries are (cell_type, n_train, n_test), got {entry!r}")
            cell_type, n_train, n_test = entry
            _check(cell_type in CELL_TYPES, f"unknown cell type {cell_type!r} in experiments (known: {CELL_TYPES})")
            _check(cell_type not in seen, f"cell type {cell_type!r} listed twice in experiments")
            seen.add(cell_type)
            _check(isinstance(n_train, int) and isinstance(n_test, int) and n_train >= 0 and n_test >= 0
                   and n_train + n_test >= 1 and n_train + n_test <= 99,
                   f"experiments entry {entry!r}: n_train, n_test must be ints >= 0 with 1 <= sum <= 99")
        _check(isinstance(self.n_plates, int) and 1 <= self.n_plates <= 99, f"n_plates must be in 1..99, got {self.n_plates!r}")
        _check(isinstance(self.n_plate_groups, int) and 1 <= self.n_plate_groups <= self.n_treatments - self.n_junk,
               f"n_plate_groups must be in 1..{self.n_treatments - self.n_junk} (real treatments), got {self.n_plate_groups!r}")
        for name in ("treatment_replicates", "positive_control_replicates"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be an int >= 1, got {value!r}")
        _check(isinstance(self.negative_control_wells, int) and self.negative_control_wells >= 1,
               f"negative_control_wells must be an int >= 1, got {self.negative_control_wells!r}")
        _check(self.n_sites in (1, 2), f"n_sites must be 1 or 2, got {self.n_sites!r}")
        real = self.n_treatments - self.n_junk
        largest_group = -(-real // self.n_plate_groups)
        wells = (largest_group * self.treatment_replicates + self.n_positive_controls * self.positive_control_replicates
                 + self.negative_control_wells)
        _check(wells <= len(INNER_WELLS),
               f"a plate would need {wells} wells but has {len(INNER_WELLS)} inner wells: raise n_plate_groups "
               f"or lower treatment_replicates/positive_control_replicates/negative_control_wells")

    def _check_distributions(self) -> None:
        """Ranges of the phenotype, nuisance, noise, cue and look parameters."""
        _check(0 < self.contrast_gamma[0] <= self.contrast_gamma[1] <= 4,
               f"contrast_gamma must be (low, high) with 0 < low <= high <= 4, got {self.contrast_gamma!r}")
        for name in ("treatment_strength", "treatment_penetrance", "positive_strength", "vignette"):
            low, high = getattr(self, name)
            _check(0 <= low <= high, f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)!r}")
        for name in ("treatment_penetrance",):
            _check(getattr(self, name)[1] <= 1, f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        _check(0 < self.positive_penetrance <= 1, f"positive_penetrance must be in (0, 1], got {self.positive_penetrance!r}")
        for name in ("pair_fraction", "cue_probability"):
            _check(0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("density_jitter", "exp_gain_sigma", "exp_channel_gain_sigma", "offset_sigma",
                     "plate_gain_sigma", "well_gain_sigma", "illumination_tilt", "read_noise", "cue_amplitude"):
            _check(float(getattr(self, name)) >= 0, f"{name} must be >= 0, got {getattr(self, name)!r}")
        _check(self.test_gain_widen > 0, f"test_gain_widen must be > 0, got {self.test_gain_widen!r}")
        _check(self.photons_per_level > 0, f"photons_per_level must be > 0, got {self.photons_per_level!r}")
        _check(self.cue_channel in range(1, N_CHANNELS + 1), f"cue_channel must be in 1..{N_CHANNELS}, got {self.cue_channel!r}")
        _check(isinstance(self.calibration_sites, int) and self.calibration_sites >= 1,
               f"calibration_sites must be an int >= 1, got {self.calibration_sites!r}")
        for name in ("texture", "clustering", "psf_sigma", "haze"):
            _check(0 <= float(getattr(self, name)) <= 10, f"{name} must be in 0..10, got {getattr(self, name)!r}")
        _check(isinstance(self.fit_foreground, bool), f"fit_foreground must be true or false, got {self.fit_foreground!r}")
        _check(len(self.density_scale) == len(CELL_TYPES) and all(0.2 <= float(v) <= 5 for v in self.density_scale),
               f"density_scale must be {len(CELL_TYPES)} values in 0.2..5 (one per cell type {CELL_TYPES}), "
               f"got {self.density_scale!r}")
        _check(len(self.nucleus_scale) == len(CELL_TYPES) and all(0.2 <= float(v) <= 3 for v in self.nucleus_scale),
               f"nucleus_scale must be {len(CELL_TYPES)} values in 0.2..3 (one per cell type {CELL_TYPES}), "
               f"got {self.nucleus_scale!r}")
        _check(len(self.nucleus_jitter) == len(CELL_TYPES) and all(0 <= float(v) <= 1 for v in self.nucleus_jitter),
               f"nucleus_jitter must be {len(CELL_TYPES)} values in 0..1 (one per cell type {CELL_TYPES}), "
               f"got {self.nucleus_jitter!r}")
        _check(len(self.exp_gain_channel_scale) == N_CHANNELS
               and all(0 <= float(v) <= 2 for v in self.exp_gain_channel_scale),
               f"exp_gain_channel_scale must be {N_CHANNELS} values in 0..2 (one per channel w1..w{N_CHANNELS}), "
               f"got {self.exp_gain_channel_scale!r}")


#: Fields added after synthetic sets had been written, with the default that reproduces the old
#: images; :meth:`SynthConfig.to_dict` leaves them out at that default.
OPTIONAL_FIELDS: dict[str, Any] = {"texture": 0.0, "clustering": 0.0, "psf_sigma": 0.0, "haze": 0.0,
                                   "nucleus_scale": (1.0, 1.0, 1.0, 1.0), "density_scale": (1.0, 1.0, 1.0, 1.0),
                                   "fit_foreground": False, "nucleus_jitter": (0.10, 0.10, 0.10, 0.10),
                                   "exp_gain_channel_scale": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _listify(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_listify(v) for v in value]
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    return value


def _tupleify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupleify(v) for v in value)
    return value


#: RxRx1's layout: 51 experiments (33 train / 18 test), 4 plates of 308 inner wells, 2 sites.
_RXRX1_EXPERIMENTS = (("HEPG2", 7, 4), ("HUVEC", 16, 8), ("RPE", 7, 4), ("U2OS", 3, 2))

#: Named profiles. ``smoke``: 64x64, 19 classes present (16 treatments + 2 positive + negative; 4 junk
#: ids), 12 experiments (8 train / 4 test), ~1,700 sites. ``cpu``: 128x128, 60 treatment ids (6 junk),
#: 5 positive controls, 20 experiments (12 train / 8 test). ``rxrx1``: RxRx1-sized, 512x512, 1139 classes,
#: 51 experiments, 4 plates x 308 wells x 2 sites (125,664 sites; for GPU machines, use ``workers``).
#: ``paper-mini``: the miniature of the paper profile for CI (see its comment).
PROFILES: dict[str, SynthConfig] = {
    "smoke": SynthConfig(),
    "cpu": SynthConfig(
        image_size=128, cell_scale=0.4, n_treatments=60, n_junk=6, n_positive_controls=5,
        experiments=(("HEPG2", 3, 2), ("HUVEC", 3, 2), ("RPE", 3, 2), ("U2OS", 3, 2)),
        n_plates=2, n_plate_groups=1, treatment_replicates=1, negative_control_wells=2,
        calibration_sites=4,
    ),
    # The paper profile with only its sizes shrunk, for CI (``rxlib reproduce --profile paper-mini``):
    # 64x64 is the smallest side at which every DenseNet-161 stage keeps a spatial map (its total
    # stride is 32, so denseblock4 is 2x2; at 32x32 it would be 1x1 and Grad-CAM at the paper's layer
    # would have no spatial extent). 8 experiments (4 train / 4 test), one plate each, one site per
    # well: 96 sites, 48 held out.
    "paper-mini": SynthConfig(
        image_size=64, cell_scale=0.4, n_treatments=6, n_junk=1, n_positive_controls=1,
        experiments=(("HEPG2", 1, 1), ("HUVEC", 1, 1), ("RPE", 1, 1), ("U2OS", 1, 1)),
        n_plates=1, n_plate_groups=1, treatment_replicates=2, negative_control_wells=1, n_sites=1,
        calibration_sites=4,
    ),
    # Looks like the real 512x512 RxRx1 sites (issue 12, point 6; scored by rxlib.data.realism):
    # real pixel size, textured nuclei and cytoplasm, optical blur, haze between cells, less noise,
    # cell coverage varying by site (density jitter and clustering), subtler phenotypes (networks
    # not at ceiling). Small enough for a CPU notebook: 8 experiments (4 train / 4 test), one plate
    # of 10 wells, 2 sites: 160 sites.
    "realistic": SynthConfig(
        image_size=512, cell_scale=1.0, n_treatments=8, n_junk=0, n_positive_controls=1,
        experiments=(("HEPG2", 1, 1), ("HUVEC", 1, 1), ("RPE", 1, 1), ("U2OS", 1, 1)),
        n_plates=1, n_plate_groups=1, treatment_replicates=1, negative_control_wells=1, n_sites=2,
        treatment_strength=(0.25, 0.7), treatment_penetrance=(0.3, 0.7), positive_strength=(0.7, 1.2),
        positive_penetrance=0.8, density_jitter=0.3, photons_per_level=40.0, read_noise=0.3,
        calibration_sites=2, texture=1.0, clustering=0.8, psf_sigma=2.0, haze=0.15,
        # nuclei as large as Otsu + watershed finds them on the real sites (rxlib.data.realism)
        nucleus_scale=(0.78, 1.0, 0.92, 1.0),
        # HepG2 nuclei vary in size far more than drawn by default: on the real pieces the interquartile
        # range of log nucleus area (segment_nuclei, w1) is 0.79 in HEPG2-01 and 0.67 in HEPG2-08 (areas
        # 5-95%: 30-470 px pooled), against 0.45 (77-316 px) with the default 0.10; 0.25 gives 0.77
        # (51-475 px; seed 0). The other cell types' areas already match (their distributions pass).
        nucleus_jitter=(0.25, 0.10, 0.10, 0.10),
        # w2 (ConA) follows the experiment's brightness at 0.3 of the others' strength (rounded up from the
        # measured 0.23-0.27): between the two real experiments, HEPG2-01 vs HEPG2-08, its mean differs 1.38x
        # (log 0.32) against 2.8-9.2x in w1, w3-w6 (log 1.04-2.22, mean 1.37; mean of all six 1.19), and no two
        # real batches of one cell type (plates included) differ by more than 1.58x in w2 (RPE-01 plates 1 vs
        # 2). Drawn fully, seed 0 gave w2 gains 0.70 vs 1.22 (HEPG2-01/-02) and 1.06 vs 1.56 (RPE-01/-02),
        # wider apart than any real w2 pair. The other channels keep the full draw: their real experiment
        # difference is wider than it (train-vs-test log-gain sd 0.72 per channel against real 1.04-2.22).
        exp_gain_channel_scale=(1.0, 0.3, 1.0, 1.0, 1.0, 1.0),
        # HepG2 as crowded as Otsu + watershed counts the real pieces (442 nuclei per site, median of
        # HEPG2-01 and HEPG2-08; CELL_TYPE_SHAPES has HEPG2-08's 330)
        density_scale=(1.25, 1.0, 1.0, 1.0),
        # each stain as spread out over the field as on the real sites (REAL_FOREGROUND)
        fit_foreground=True,
    ),
    "rxrx1": SynthConfig(
        image_size=512, cell_scale=1.0, n_treatments=1108, n_junk=0, n_positive_controls=30,
        experiments=_RXRX1_EXPERIMENTS, n_plates=4, n_plate_groups=4, treatment_replicates=1,
        positive_control_replicates=1, negative_control_wells=1, treatment_strength=(0.5, 1.4),
        treatment_penetrance=(0.4, 0.9), calibration_sites=2,
    ),
}


def resolve_config(profile: str, overrides: dict[str, Any]) -> SynthConfig:
    """The profile's config with ``overrides`` applied and validated.

    Raises:
        ValueError: unknown profile, unknown override name, or a bad value (the message names it).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown synthetic profile {profile!r}; choose one of {sorted(PROFILES)}")
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown synthetic override(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {k: _tupleify(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(PROFILES[profile], **values).validated()


__all__ = [
    "CELL_TYPE_SHAPES",
    "INNER_WELLS",
    "PROFILES",
    "REAL_FOREGROUND",
    "REAL_FOREGROUND_BATCH_SPREAD",
    "REAL_MEAN",
    "REAL_MEAN_SPREAD",
    "REAL_NUCLEI_PER_FIELD",
    "REAL_NUCLEUS_AREA",
    "REAL_P1",
    "REAL_STD",
    "CellTypeShape",
    "SynthConfig",
    "resolve_config",
]
