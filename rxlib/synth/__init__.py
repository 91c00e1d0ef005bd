"""A synthetic RxRx1 with planted, known ground truth.

Data card
=========

What it is
    Six-channel fluorescence images of cultured cells in the layout of the official RxRx1 release
    (Sypetkowski et al. 2023, rxrx.ai), drawn from a generative model whose every parameter is
    recorded, so that classifiers trained on it can be checked and their explanations (Grad-CAM,
    channel attention, Grad-CAMO) scored against the truth. It stands in for RxRx1 in
    "Distangling Biological Noise in Cellular Images with a focus on Explainability" (Sharma &
    Krishnamurthi 2022) wherever the 46 GB real set is absent. It is not real biology: the phenotypes
    are simple, documented image changes.

Use
    ``generate(out, profile="smoke", seed=0, spurious_cue=False, workers=1, progress=True,
    overwrite=False, **overrides)``; the profiles are in :data:`PROFILES` (:class:`SynthConfig`):

    ========  =======  ============================================  ==================  ============
    profile   size     classes (treatments / junk / positive / neg)  experiments          sites
    ========  =======  ============================================  ==================  ============
    smoke     64x64    20 / 4 / 2 / 1  (23 ids, 19 present)          12 (8 train/4 test)  1,728
    cpu       128x128  60 / 6 / 5 / 1  (66 ids, 60 present)          20 (12/8)            4,880
    paper-mini 64x64   6 / 1 / 1 / 1  (8 ids, 7 present)             8 (4/4)              96 (1 site/well)
    realistic 512x512  8 / 0 / 1 / 1  (10 ids)                      8 (4/4)              160
    rxrx1     512x512  1108 / 0 / 30 / 1  (1139 ids)                 51 (33/18)           125,664
    ========  =======  ============================================  ==================  ============

    ``realistic`` draws cells at the real pixel size and is meant to look like the real sites (scored
    by :func:`rxlib.data.realism.realism_table`): multi-scale chromatin and log-normal cytoplasm
    texture (``texture``), a Gaussian point-spread function (``psf_sigma``) and out-of-focus haze
    (``haze``) so that the background is not flat, less camera noise, a per-site log-normal density
    field (``clustering``) with ``density_jitter`` 0.3 so that cell coverage varies from site to site,
    nucleus sizes per cell type (``nucleus_scale``) and subtler phenotypes (strength 0.25-0.7,
    penetrance 0.3-0.7). These five fields default to the flat look of the other profiles, whose
    images and ``params.json`` are unchanged.

    ``rxrx1``: HEPG2 11, HUVEC 24, RPE 11, U2OS 5 experiments (train HEPG2-01..07, HUVEC-01..16,
    RPE-01..07, U2OS-01..03, the rest test), 4 plates each, every plate one of four disjoint groups
    of 277 treatments plus the 30 positive controls and the negative control in its 308 inner wells,
    2 sites per well. ``smoke`` and ``cpu`` put every treatment on every plate.

Files (``OUT/``)
    ``metadata.csv`` (written last; its presence marks a finished set)
        ``site_id, well_id, cell_type, dataset, experiment, plate, well, site, well_type, sirna,
        sirna_id`` with ``site_id = {experiment}_{plate}_{well}_{site}``, ``well_id =
        {experiment}_{plate}_{well}``, experiment ``HEPG2-01``..., plate 1.., well ``B02``..``O23``
        (rows B-O, columns 02-23), site 1|2, dataset ``train|test``, well_type ``treatment |
        positive_control | negative_control``. Test experiments carry labels, as in the official
        release.
    ``images/{experiment}/Plate{plate}/{well}_s{site}_w{c}.png``
        c = 1..6, 8-bit greyscale, ``image_size`` square.
    ``truth/params.json`` (written first)
        Profile, seed, every :class:`SynthConfig` value, image_size, n_classes, the calibration per
        cell type (background, scale, target mean), the cell-type shapes, and every nuisance value:
        per experiment (gain, offset, vignette, illumination centre, per channel), per plate (gain,
        illumination tilt) and per well (gain), keyed ``{experiment}``, ``{experiment}_{plate}``,
        ``{experiment}_{plate}_{well}``.
    ``truth/classes.csv``
        One row per class id, junk classes included: ``class_id, sirna, kind, junk, in_train,
        in_test, compartment, effect, channels, strength, penetrance, importance_w1..importance_w6``.
        Two-effect phenotypes list their parts separated by ``;``. ``importance_w*`` is the planted
        channel importance (each channel's share of the phenotype strength): it sums to 1 for classes
        with a phenotype and is all 0 for the negative control and junk classes.
    ``truth/sites.csv``
        Per site: ids, ``sirna_id``, ``n_cells`` (labels in the cell mask), ``density`` (multiplier of
        the expected number of cells), ``phenotype_pixels``,
        ``cue_drawn``, and the nuisance applied: ``gain_w*`` (experiment x plate x well),
        ``offset_w*``, ``vignette_w*``.
    ``truth/masks/{experiment}/Plate{p}/{well}_s{site}_cells.png``
        uint16 label image: 0 background, k = cell k (1..n_cells).
    ``truth/masks/{experiment}/Plate{p}/{well}_s{site}_phenotype.png``
        uint8, 255 where the phenotype was planted (always inside cells; empty for negative controls
        and for cells the penetrance left unaffected).

Labels
    RxRx1 convention: treatments ``0..T-1`` (names ``SYN-T0000``...), positive controls ``T..T+P-1``
    (``SYN-P01``...), the negative control ``T+P`` (``UNTREATED``). ``n_junk`` treatment ids, chosen
    at random, are junk classes: they exist in ``classes.csv`` (``junk=True, in_train=False``) but in
    no split, like the paper's classes without samples. ``rxrx1`` has none (all 1108 treatments of
    the real release have samples).

Channels and what is drawn (the RxRx1 Cell Painting stains)
    w1 Hoechst: nuclei (smooth fill with chromatin texture; 15% of cells in G2 at 1.6x).
    w2 ConA: endoplasmic reticulum, brightest around the nucleus, fading to the cell edge.
    w3 Phalloidin: cortical actin at the cell edge plus stress fibres along the long axis.
    w4 Syto14: 1 + Poisson(1.5) nucleoli (bright spots in the nucleus), dim nucleus, cytoplasmic RNA.
    w5 MitoTracker: mitochondrial puncta in the cytoplasm, denser near the nucleus.
    w6 WGA: Golgi (a cluster of spots beside the nucleus) plus the plasma-membrane outline.
    Cell types differ in size, elongation, outline and density: HEPG2 small, crowded and in clumps;
    HUVEC elongated (2.4:1); RPE large and polygonal; U2OS large and irregular (see
    ``CELL_TYPE_SHAPES``). ``cell_scale`` shrinks cells relative to a real 512x512 field (0.4 in
    ``smoke``/``cpu``: a 64x64 image holds the cells of a 160x160 real crop, at the real density).

Planted phenotypes
    16 atomic effects (``design.ATOMIC_EFFECTS``), each one stain in one compartment: w1 nucleus
    intensity up/down, enlargement (1 + 0.45 s, drawn in w1), granular texture; w2 cytoplasm
    intensity up/down; w3 stress fibres up (1 + 1.5 s), cortex down; w4 nucleoli more (+1 + 2.5 s) or
    bigger (sigma x (1 + 0.6 s)), cytoplasmic RNA up; w5 puncta more (density x (1 + 2 s)), fewer
    (/ (1 + 2 s)), bigger (sigma x (1 + s)); w6 Golgi enlarged (more and wider spots), membrane up.
    Intensity effects multiply the compartment by ``1 + s`` (up) or ``1 / (1 + s)`` (down). The
    first 16 real treatments get one effect each; later ones (``pair_fraction``) two effects in two
    different channels. Strength ``s`` ~ U(``treatment_strength``), penetrance ~
    U(``treatment_penetrance``): each cell of a treated well shows the phenotype with that
    probability. Positive controls: two effects of strength ~ U(``positive_strength``), penetrance
    ``positive_penetrance``. The negative control and junk classes have none. Compartments: nucleus,
    cytoplasm (cell minus nucleus), membrane (band at the cell edge), golgi.

Nuisance (what a model must see past)
    ``pixel = gain * illumination * (background + scale * signal ** gamma) + offset``, then shot noise
    (Gaussian of variance ``pixel / photons_per_level``) and read noise, rounded and clipped to 0..255.
    ``gain`` = experiment x plate x well, per channel: experiment log-gain ~ N(0, 0.35) shared by the
    channels + N(0, 0.15) per channel; plate N(0, 0.07); well N(0, 0.04). Offsets ~ N(0, 1) grey
    levels. Illumination: radial vignette 5-25% to the corners around a jittered centre (per
    experiment and channel) plus a linear tilt up to 8% (per plate). Test experiments draw their
    experiment gain and offset from a shifted (+0.25 in log-gain) and 1.6x wider distribution never
    seen in training, as RxRx1's test experiments differ from its training ones.

Spurious cue (``spurious_cue=True``)
    A grating of ``cue_amplitude`` grey levels in background pixels only (cell mask 0) of channel
    ``cue_channel`` (w6), whose orientation encodes the class (angle = pi * rank / n_present_classes,
    period 8 pixels), drawn on training sites only (probability ``cue_probability``), never on test
    sites: a model can cheat on it in training and fails on test. ``sites.csv`` says where it is.

Calibration to real RxRx1 (targets in :mod:`rxlib.synth.config`)
    Measured on the 180 real 512x512 negative-control PNGs in ``../shared/rxrx1/kaggle-2023``
    (HEPG2-01, HEPG2-08, HUVEC-01, RPE-01, U2OS-01; well B02). Per cell type and channel the
    background is the real 1st percentile, the contrast exponent ``gamma`` (searched in
    ``contrast_gamma``, default 0.5-1.5) brings the coefficient of variation of negative-control
    renders as close as it can to the real one (std / mean of the pixel values), and the
    scale makes their mean equal the real mean pixel value (at unit gain); all three are in
    ``params.json`` under ``calibration``. Real std per image w1..w6: HEPG2 27/11/17/14/32/14, HUVEC
    7/18/5/10/2/8, RPE 5/8/8/5/4/6, U2OS 12/8/5/5/2/8. The synthetic images stay somewhat more
    contrasted than the real ones (the lower bound 0.5 keeps intensity phenotypes visible: with 0.2
    the held-out accuracy of a small CNN on ``smoke`` fell by about half). Real means w1..w6: HEPG2 38/27/40/38/67/36 (HEPG2-01 is
    ~5x brighter than HEPG2-08: an experiment effect), HUVEC 5/23/12/13/2/16, RPE 6/13/18/11/5/16,
    U2OS 10/13/12/10/3/17. Density: nuclei per 512x512 field HEPG2 ~330 (330-700), HUVEC 120, RPE 94,
    U2OS 144; nucleus areas 300/475/619/576 pixels.

Determinism and robustness
    Every random draw comes from ``np.random.SeedSequence([seed, stream, *indices])`` keyed by
    experiment, plate, well and site, so the same seed and parameters give the same bytes whatever
    the order or ``workers``. Files are written atomically; re-running into a partial folder with
    the same parameters resumes (finished sites are decoded again, and a damaged one is redrawn);
    other parameters raise :class:`SynthParameterMismatch` unless ``overwrite=True``.

Output folder safety (:mod:`rxlib.outputs`)
    The folder is locked for one writer (``filelock``; a second ``generate`` into it gets
    ``OutputFolderBusy`` at once) and every file is listed in ``.rxlib-written.txt`` before it is
    written. A folder holding anything rxlib did not write is refused, naming the folder and the
    files, even with ``overwrite`` (:class:`SynthFolderNotOurs`); ``overwrite`` removes only the
    recorded files. A full disk raises ``DiskFullError`` ("no space left on device", naming the
    folder) and leaves no ``metadata.csv``, so the set never looks finished.

Nothing happens on import.
"""
from rxlib.synth.config import PROFILES, SynthConfig
from rxlib.synth.writer import SynthFolderNotOurs, SynthParameterMismatch, generate

__all__ = ["PROFILES", "SynthConfig", "SynthFolderNotOurs", "SynthParameterMismatch", "generate"]
