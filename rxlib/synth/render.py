"""Drawing one site: cells per stain, the planted phenotype, then the microscope (gain, offset,
uneven illumination, shot and read noise) and the optional spurious background cue.

:func:`render_cells` gives the clean fluorophore signal (arbitrary units, before any nuisance) with
the cell label image and the phenotype mask; :func:`acquire` turns it into 8-bit images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from rxlib.config import N_CHANNELS
from rxlib.synth.config import CellTypeShape
from rxlib.synth.design import ClassSpec

_TWO_PI = 2.0 * np.pi


@dataclass
class CleanSite:
    """Clean signal (6, S, S) float32, cell labels (S, S) uint16, phenotype mask (S, S) bool."""

    signal: np.ndarray
    labels: np.ndarray
    phenotype: np.ndarray
    n_cells: int


def _place_centres(rng: np.random.Generator, n: int, size: int, margin: float, min_dist: float,
                   shape: CellTypeShape, cell_r: float, clustering: float = 0.0) -> np.ndarray:
    """Up to ``n`` cell centres, no two within ``min_dist`` (nuclei do not overlap).

    Greedy dart throwing over batches of candidates: uniform, or for clumped cell types (HEPG2)
    scattered around a few colony centres. With ``clustering`` > 0, candidates are thinned by a
    smooth random density field of the site (log-normal, sigma ``clustering``, features ~6 cells
    wide), so that cells crowd in some parts of the field and leave gaps in others.
    """
    lo, hi = -margin, size + margin
    n_clusters = max(1, round(n / 8))
    cluster_centres = rng.uniform(lo, hi, (n_clusters, 2)) if shape.clustered else None
    field = None
    if clustering > 0:
        cells = max(2, int(np.ceil((hi - lo) / (6 * cell_r))) + 1)
        coarse = rng.normal(0, clustering, (cells, cells))
        field = np.exp(coarse - coarse.max())  # acceptance in (0, 1], 1 at the densest point
    accepted = np.empty((0, 2))
    for _ in range(8 if field is None else 16):
        m = 6 * (n - len(accepted)) + 8
        if cluster_centres is not None:
            cand = cluster_centres[rng.integers(n_clusters, size=m)] + rng.normal(0, 2.2 * cell_r, (m, 2))
            cand = cand[(cand >= lo).all(axis=1) & (cand <= hi).all(axis=1)]
        else:
            cand = rng.uniform(lo, hi, (m, 2))
        if field is not None:
            grid = (cand - lo) / (hi - lo) * (field.shape[0] - 1)
            accept = ndi.map_coordinates(field, grid.T, order=1, mode="nearest")
            cand = cand[rng.random(len(cand)) < accept]
        pairs = cKDTree(cand).query_pairs(min_dist, output_type="ndarray")
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        starts = np.searchsorted(pairs[:, 0], np.arange(len(cand) + 1))
        blocked = np.zeros(len(cand), bool)
        if len(accepted):
            dist, _ = cKDTree(accepted).query(cand, distance_upper_bound=min_dist)
            blocked |= np.isfinite(dist)
        keep = []
        for i in range(len(cand)):
            if blocked[i]:
                continue
            keep.append(i)
            if len(accepted) + len(keep) == n:
                break
            blocked[pairs[starts[i]:starts[i + 1], 1]] = True
        accepted = np.concatenate([accepted, cand[keep]])
        if len(accepted) >= n:
            break
    return accepted


@dataclass
class _CellDraws:
    """Per-cell draws of one site, one entry per cell drawn (placement may keep fewer: the first n)."""

    angle: np.ndarray
    nuc_angle: np.ndarray
    ca: np.ndarray
    cb: np.ndarray
    na: np.ndarray
    nb: np.ndarray
    harm_amp: np.ndarray
    harm_phase: np.ndarray
    nuc_off: np.ndarray
    fibre_phase: np.ndarray
    fibre_angle: np.ndarray
    golgi_dir: np.ndarray
    cell_mult: np.ndarray
    affected: np.ndarray
    n_nucleoli: np.ndarray


@dataclass
class _SiteCanvas:
    """One site while its stains are drawn: the placed cells, the masks and per-pixel fields every
    stain reads, and the signal and phenotype mask the stain steps fill in."""

    s: float
    centres: np.ndarray  # (n, 2) of the cells placed
    cells: _CellDraws
    effects: dict  # (channel, compartment, effect) -> strength
    nuc_grow: float
    labels: np.ndarray  # cell index + 1 per pixel, 0 = background (before relabelling)
    rho_c: np.ndarray
    rho_n: np.ndarray
    v_loc: np.ndarray
    cell: np.ndarray
    nuc: np.ndarray
    cyto: np.ndarray
    aff_px: np.ndarray  # pixels of affected cells
    edge: np.ndarray  # membranes, ~1 on the line between cells
    tex: np.ndarray
    fine: np.ndarray
    mult: np.ndarray
    signal: np.ndarray
    pheno: np.ndarray

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    @property
    def n(self) -> int:
        return len(self.centres)

    def strength(self, channel: int, compartment: str, effect: str) -> float:
        """The strength of one effect of the class, 0 if the class does not have it."""
        return self.effects.get((channel, compartment, effect), 0)

    def apply(self, channel: int, compartment: str, effect: str, region: np.ndarray, factor: float) -> None:
        """Scale the channel by ``factor`` in ``region`` of affected cells if the class has the effect."""
        if (channel, compartment, effect) in self.effects:
            hit = region & self.aff_px
            self.signal[channel - 1][hit] *= factor
            self.pheno[hit] = True


def render_cells(rng: np.random.Generator, size: int, cell_scale: float, shape: CellTypeShape,
                 spec: ClassSpec, density: float = 1.0, *, texture: float = 0.0, clustering: float = 0.0,
                 nucleus_scale: float = 1.0, nucleus_jitter: float = 0.10) -> CleanSite:
    """Draw the cells of one site with the phenotype of ``spec`` (clean signal, no nuisance).

    The steps run in a fixed order because each takes its draws from ``rng`` in turn: the cells'
    count and shapes, their placement, the stain noise, then the stains w1-w6 and the texture.

    Args:
        rng: the site's generator (every draw of the site comes from it, in a fixed order).
        size: image height and width.
        cell_scale: cell size relative to a real 512x512 RxRx1 field.
        shape: morphology of the cell type.
        spec: the class of the well; its effects are applied to a ``penetrance`` fraction of cells.
        density: multiplier of the expected number of cells (site-level jitter).
        texture: amplitude of the multi-scale texture drawn over the cells (chromatin in w1,
            granular cytoplasm in w2, w4-w6; 0 = none, as in the ``smoke`` profile; see
            :func:`_add_texture`). Its draws come after all others, so 0 leaves the site unchanged.
        clustering: sigma of the site's log-normal density field (0 = none; see :func:`_place_centres`).
        nucleus_scale: multiplier of the nucleus radius (the cell size is unchanged).
        nucleus_jitter: log-normal sigma of each nucleus' own radius factor, on top of the cell's size
            (0.10 = the original draw; the same standard-normal draws, so only their spread changes).
    """
    s = float(cell_scale)
    nuc_r, cell_r = shape.nucleus_radius * s * nucleus_scale, shape.cell_radius * s
    margin = 0.6 * cell_r
    n = _cell_count(rng, size, s, shape, density, margin)
    cells = _draw_cells(rng, n, shape, spec, cell_r, nuc_r, nucleus_jitter)
    min_dist = 2.0 * float(np.mean(cells.na))  # nuclei (almost) never overlap
    centres = _place_centres(rng, n, size, margin, min_dist, shape, cell_r, clustering)
    site = _lay_out_site(rng, centres, cells, spec, shape, size, s)
    # the textured look (``texture`` > 0) draws thinner ER, fainter cortex and membrane: the real
    # images show no crisp cell outlines; the flat look keeps its original weights (and bytes)
    er_decay, cortex_w, membrane_w = (0.45, 0.9, 0.6) if texture == 0 else (0.3, 0.45, 0.3)
    _draw_hoechst(site)
    _draw_cona(site, er_decay)
    _draw_phalloidin(site, cortex_w)
    _draw_syto14(rng, site)
    _draw_mitotracker(rng, site)
    _draw_wga(rng, site, membrane_w)
    if texture > 0:
        _add_texture(rng, site.signal, site.nuc, site.cyto, texture, s)
    site.pheno &= site.cell
    labels, n_present = _relabel(site.labels, site.n)
    return CleanSite(site.signal, labels, site.pheno, n_present)


def _cell_count(rng: np.random.Generator, size: int, s: float, shape: CellTypeShape, density: float,
                margin: float) -> int:
    """Number of cells to draw: Poisson around the cell type's density over the site and its margin."""
    area_real = ((size + 2 * margin) / s) ** 2
    n_expected = shape.nuclei_per_field * area_real / 512.0**2 * density
    return max(1, int(rng.poisson(n_expected)))


def _draw_cells(rng: np.random.Generator, n: int, shape: CellTypeShape, spec: ClassSpec, cell_r: float,
                nuc_r: float, nucleus_jitter: float = 0.10) -> _CellDraws:
    """Sizes, orientations, outlines, brightness and phenotype of ``n`` cells (before placement)."""
    size_jit = np.exp(rng.normal(0, 0.12, n))
    nuc_jit = np.exp(rng.normal(0, nucleus_jitter, n)) * size_jit ** 0.5
    angle = rng.uniform(0, np.pi, n)
    nuc_angle = angle + rng.normal(0, 0.25, n)
    el_c = shape.cell_elongation * np.exp(rng.normal(0, 0.15, n))
    el_n = shape.nucleus_elongation * np.exp(rng.normal(0, 0.08, n))
    ca, cb = cell_r * size_jit * np.sqrt(el_c), cell_r * size_jit / np.sqrt(el_c)
    na, nb = nuc_r * nuc_jit * np.sqrt(el_n), nuc_r * nuc_jit / np.sqrt(el_n)
    harm_amp = rng.normal(0, 1, (n, 4)) * shape.irregularity / 2.0
    harm_phase = rng.uniform(0, _TWO_PI, (n, 4))
    nuc_off = rng.normal(0, 0.12, (n, 2)) * cell_r
    fibre_phase = rng.uniform(0, _TWO_PI, n)
    fibre_angle = rng.normal(0, 0.2, n)
    golgi_dir = rng.uniform(0, _TWO_PI, n)
    g2 = rng.random(n) < 0.15  # cells in G2: twice the DNA
    cell_mult = np.exp(rng.normal(0, 0.18, (N_CHANNELS, n)))
    cell_mult[0] *= np.where(g2, 1.6, 1.0)
    affected = rng.random(n) < spec.penetrance if spec.effects else np.zeros(n, bool)
    n_nucleoli = 1 + rng.poisson(1.5, n)
    return _CellDraws(angle, nuc_angle, ca, cb, na, nb, harm_amp, harm_phase, nuc_off, fibre_phase, fibre_angle,
                      golgi_dir, cell_mult, affected, n_nucleoli)


def _lay_out_site(rng: np.random.Generator, centres: np.ndarray, cells: _CellDraws, spec: ClassSpec,
                  shape: CellTypeShape, size: int, s: float) -> _SiteCanvas:
    """Pixel ownership, compartments, membranes and stain noise of the placed cells; empty signal."""
    n = len(centres)
    effects = {(e.channel, e.compartment, e.effect): e.strength for e in spec.effects}
    nuc_grow = 1.0 + 0.45 * effects.get((1, "nucleus", "enlarge"), 0.0)
    # each pixel belongs to the cell of smallest normalised distance
    c = cells
    geometry = _CellGeometry(centres[:n], c)
    reach = np.maximum(c.ca * (1 + 2 * shape.irregularity), c.na * nuc_grow) + 2
    labels, rho_c, rho_n, v_loc = _ownership(geometry, size, reach)
    cell = labels > 0
    nuc = cell & (rho_n < 1.0)
    cyto = cell & ~nuc
    aff_px = np.concatenate([[False], c.affected[:n]])[labels]
    edge = _membrane_edge(labels, cell, s)
    tex, fine = _stain_noise(rng, size)
    mult = np.concatenate([np.ones((N_CHANNELS, 1)), c.cell_mult[:, :n]], axis=1).astype(np.float32)[:, labels]
    signal = np.zeros((N_CHANNELS, size, size), np.float32)
    pheno = np.zeros((size, size), bool)
    return _SiteCanvas(s, centres, cells, effects, nuc_grow, labels, rho_c, rho_n, v_loc, cell, nuc, cyto, aff_px,
                       edge, tex, fine, mult, signal, pheno)


def _membrane_edge(labels: np.ndarray, cell: np.ndarray, s: float) -> np.ndarray:
    """Membranes: the boundaries between cells and background, blurred to a line of height ~1."""
    padded = np.pad(labels, 1, mode="edge")  # the image border is not a membrane
    boundary = cell & ((padded[:-2, 1:-1] != labels) | (padded[2:, 1:-1] != labels)
                       | (padded[1:-1, :-2] != labels) | (padded[1:-1, 2:] != labels))
    sigma_edge = max(0.6, 1.2 * s)
    # a blurred one-pixel line peaks at 1 / (sqrt(2 pi) sigma): scale so that membranes reach ~1
    edge = ndi.gaussian_filter(boundary.astype(np.float32), sigma_edge) * np.float32(np.sqrt(_TWO_PI) * sigma_edge)
    return np.clip(edge * 1.3, 0, 1) * cell


def _stain_noise(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth unit-variance noise for four stains (4, S, S) and white noise (S, S) for the chromatin."""
    tex = ndi.gaussian_filter(rng.standard_normal((4, size, size)).astype(np.float32), (0, 0.8, 0.8))
    tex /= np.maximum(tex.std(axis=(1, 2), keepdims=True), 1e-6)
    fine = rng.standard_normal((size, size)).astype(np.float32)
    return tex, fine


def _relabel(labels: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Labels 1..n_present (uint16), in order of cell index, and n_present: cells hidden by others drop out."""
    present = np.unique(labels[labels > 0])
    remap = np.zeros(n + 1, np.int32)
    remap[present] = np.arange(1, len(present) + 1)
    return remap[labels].astype(np.uint16), len(present)


def _draw_hoechst(site: _SiteCanvas) -> None:
    """w1 Hoechst: nuclei (optionally enlarged), chromatin texture."""
    effects, signal, cell, aff_px = site.effects, site.signal, site.cell, site.aff_px
    grow = np.where(aff_px, site.nuc_grow, 1.0)
    rn1 = site.rho_n / grow
    nuc1 = cell & (rn1 < 1.0)
    signal[0] = site.mult[0] * np.sqrt(np.clip((1.0 - rn1) / 0.3, 0, 1)) * (1 + 0.2 * site.tex[0])
    if (1, "nucleus", "enlarge") in effects:
        site.pheno |= nuc1 & aff_px
    if (1, "nucleus", "texture") in effects:
        hit = nuc1 & aff_px
        signal[0][hit] *= np.clip(1 + 0.9 * effects[(1, "nucleus", "texture")] * site.fine[hit], 0.05, None)
        site.pheno |= hit
    site.apply(1, "nucleus", "intensity_up", nuc1, 1 + site.strength(1, "nucleus", "intensity_up"))
    site.apply(1, "nucleus", "intensity_down", nuc1, 1 / (1 + site.strength(1, "nucleus", "intensity_down")))


def _draw_cona(site: _SiteCanvas, er_decay: float) -> None:
    """w2 ConA: ER, perinuclear, fading towards the cell edge over ``er_decay`` of the cell radius."""
    cyto = site.cyto
    site.signal[1] = site.mult[1] * (cyto * np.exp(-site.rho_c / er_decay) + 0.15 * site.nuc) * np.clip(
        1 + 0.4 * site.tex[1], 0.1, None)
    site.apply(2, "cytoplasm", "intensity_up", cyto, 1 + site.strength(2, "cytoplasm", "intensity_up"))
    site.apply(2, "cytoplasm", "intensity_down", cyto, 1 / (1 + site.strength(2, "cytoplasm", "intensity_down")))


def _draw_phalloidin(site: _SiteCanvas, cortex_w: float) -> None:
    """w3 Phalloidin: cortex at the cell edge (weight ``cortex_w``) + stress fibres along the long axis."""
    effects, cyto, aff_px, edge = site.effects, site.cyto, site.aff_px, site.edge
    wavelength = max(2.5, 7.0 * site.s)
    phase = np.concatenate([[0.0], site.cells.fibre_phase[:site.n]])[site.labels]
    fibres = (0.5 + 0.5 * np.cos(_TWO_PI * site.v_loc / wavelength + phase)) ** 4 * cyto
    fibre_gain = np.where(aff_px, 1 + 1.5 * site.strength(3, "cytoplasm", "fibres_up"), 1.0)
    cortex_gain = np.where(aff_px, 1 / (1 + site.strength(3, "membrane", "intensity_down")), 1.0)
    site.signal[2] = site.mult[2] * (cortex_w * edge * cortex_gain + 0.45 * fibres * fibre_gain
                                     + 0.12 * site.cell) * (1 + 0.2 * site.tex[2])
    if (3, "cytoplasm", "fibres_up") in effects:
        site.pheno |= cyto & aff_px
    if (3, "membrane", "intensity_down") in effects:
        site.pheno |= (edge > 0.25) & aff_px


def _draw_syto14(rng: np.random.Generator, site: _SiteCanvas) -> None:
    """w4 Syto14: nucleoli (puncta in the nucleus) + diffuse nuclear and cytoplasmic RNA."""
    c, n, size, centres = site.cells, site.n, site.size, site.centres
    nuc, cyto, aff_px = site.nuc, site.cyto, site.aff_px
    sigma_nl = max(0.6, 2.2 * site.s)
    more_nl = site.strength(4, "nucleus", "puncta_more")
    big_nl = site.strength(4, "nucleus", "puncta_bigger")
    spikes_small = np.zeros((size, size), np.float32)
    spikes_big = np.zeros((size, size), np.float32)
    aff = c.affected[:n]
    counts = c.n_nucleoli[:n] + np.where(aff & bool(more_nl), round(1 + 2.5 * more_nl), 0)
    owner = np.repeat(np.arange(n), counts)
    r = 0.6 * np.sqrt(rng.random(len(owner)))
    t = rng.uniform(0, _TWO_PI, len(owner))
    lu, lv = r * np.cos(t) * c.na[owner], r * np.sin(t) * c.nb[owner]
    angle = c.nuc_angle[owner]
    px = centres[owner, 0] + c.nuc_off[owner, 0] + lu * np.cos(angle) - lv * np.sin(angle)
    py = centres[owner, 1] + c.nuc_off[owner, 1] + lu * np.sin(angle) + lv * np.cos(angle)
    _scatter(spikes_small, spikes_big, px, py, aff[owner] & bool(big_nl), 1.0)
    nucleoli = _blur_spikes(spikes_small, sigma_nl) + _blur_spikes(spikes_big, sigma_nl * (1 + 0.6 * big_nl))
    rna = cyto * 0.3 * np.exp(-site.rho_c / 0.6) * np.clip(1 + 0.4 * site.tex[3], 0.1, None)
    rna_gain = np.where(aff_px, 1 + site.strength(4, "cytoplasm", "intensity_up"), 1.0)
    site.signal[3] = site.mult[3] * (np.minimum(nucleoli, 1.5) * nuc + 0.25 * nuc + rna * rna_gain)
    if more_nl or big_nl:
        site.pheno |= nuc & aff_px
    if (4, "cytoplasm", "intensity_up") in site.effects:
        site.pheno |= cyto & aff_px


def _draw_mitotracker(rng: np.random.Generator, site: _SiteCanvas) -> None:
    """w5 MitoTracker: puncta in the cytoplasm, denser near the nucleus."""
    n, size, cyto, aff_px = site.n, site.size, site.cyto, site.aff_px
    sigma_m = max(0.5, 1.5 * site.s)
    density_gain = np.ones(n + 1)
    density_gain[1:][site.cells.affected[:n]] = (1 + 2.0 * site.strength(5, "cytoplasm", "puncta_more")) / (
        1 + 2.0 * site.strength(5, "cytoplasm", "puncta_fewer"))
    weight = (cyto * np.exp(-site.rho_c / 0.5) * density_gain[site.labels]).ravel()
    n_mito = int(rng.poisson(0.02 / site.s**2 * weight.sum())) if weight.sum() > 0 else 0
    spikes_small = np.zeros(size * size, np.float32)
    spikes_big = np.zeros(size * size, np.float32)
    if n_mito:
        idx = rng.choice(size * size, n_mito, p=weight / weight.sum())
        big_m = site.strength(5, "cytoplasm", "puncta_bigger")
        is_big = aff_px.ravel()[idx] if big_m else np.zeros(n_mito, bool)
        np.add.at(spikes_small, idx[~is_big], 1.0)
        np.add.at(spikes_big, idx[is_big], 1.0)
    else:
        big_m = 0.0
    mito = _blur_spikes(spikes_small.reshape(size, size), sigma_m) + _blur_spikes(
        spikes_big.reshape(size, size), sigma_m * (1 + big_m))
    site.signal[4] = site.mult[4] * (np.minimum(mito, 2.0) + 0.1) * cyto
    if any(k[0] == 5 for k in site.effects):
        site.pheno |= cyto & aff_px


def _draw_wga(rng: np.random.Generator, site: _SiteCanvas, membrane_w: float) -> None:
    """w6 WGA: Golgi beside the nucleus + plasma membrane (weight ``membrane_w``)."""
    c, n, size, s = site.cells, site.n, site.size, site.s
    cyto, aff_px, edge = site.cyto, site.aff_px, site.edge
    golgi_grow = site.strength(6, "golgi", "enlarge")
    spikes_small = np.zeros((size, size), np.float32)
    spikes_big = np.zeros((size, size), np.float32)
    big = c.affected[:n] & bool(golgi_grow)
    counts = 4 + np.where(big, round(6 * golgi_grow), 0)
    owner = np.repeat(np.arange(n), counts)
    spread = 3.0 * s * np.where(big, 1 + 1.5 * golgi_grow, 1.0)
    reach_g = 1.05 * np.maximum(c.na[:n], c.nb[:n])
    direction = np.stack([np.cos(c.golgi_dir[:n]), np.sin(c.golgi_dir[:n])], 1)
    base = site.centres + c.nuc_off[:n] + reach_g[:, None] * direction
    pts = base[owner] + rng.normal(0, 1, (len(owner), 2)) * spread[owner, None]
    inside = _in_cell(site.labels, pts[:, 0], pts[:, 1], owner + 1)
    _scatter(spikes_small, spikes_big, pts[inside, 0], pts[inside, 1], big[owner][inside], 0.5)
    sigma_g = max(0.6, 2.0 * s)
    golgi_big = _blur_spikes(spikes_big, sigma_g * (1 + 0.8 * golgi_grow))
    golgi = _blur_spikes(spikes_small, sigma_g) + golgi_big
    membrane_gain = np.where(aff_px, 1 + site.strength(6, "membrane", "intensity_up"), 1.0)
    site.signal[5] = site.mult[5] * (np.minimum(golgi, 1.5) * cyto + membrane_w * edge * membrane_gain
                                     + 0.08 * site.cell)
    if golgi_grow:
        site.pheno |= (golgi_big > 0.05) & cyto & aff_px
    if (6, "membrane", "intensity_up") in site.effects:
        site.pheno |= (edge > 0.25) & aff_px


def _norm_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """White noise smoothed with ``sigma`` and scaled to unit standard deviation (float32)."""
    noise = ndi.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _add_texture(rng: np.random.Generator, signal: np.ndarray, nuc: np.ndarray, cyto: np.ndarray,
                 texture: float, s: float) -> None:
    """Multi-scale texture, in place: chromatin in the nuclei (w1: fine grain plus coarser
    heterochromatin blobs), granular cytoplasm (w2, w4, w5, w6: two scales, shared in part between
    the stains, as organelles overlap), and the nuclear signal real WGA (w6) and Syto14 (w4) images
    show. Multiplicative, so phenotypes (intensity ratios) are kept."""
    size = signal.shape[1]
    fine, coarse = _norm_noise(rng, size, 1.0 * s), _norm_noise(rng, size, 3.0 * s)
    granule, blob = _norm_noise(rng, size, 1.5 * s), _norm_noise(rng, size, 5.0 * s)
    own = _norm_noise(rng, size, 1.2 * s)
    chromatin = np.clip(1 + texture * (0.35 * fine + 0.35 * coarse), 0.15, None)
    signal[0] *= np.where(nuc, chromatin, 1.0)
    for c, mix, amplitude in ((1, 0.5, 0.8), (2, 0.2, 0.6), (3, 0.3, 0.6), (4, 0.8, 0.6), (5, 0.4, 0.6)):
        # log-normal: bright clumps on a dimmer cytoplasm, the right-skewed histograms of real stains
        grain = np.exp(np.float32(amplitude * texture) * (mix * granule + (1 - mix) * own + 0.7 * blob))
        signal[c] *= np.where(cyto, grain, 1.0)
    if cyto.any():
        cyto_level = float(np.mean(signal[5][cyto]))
        signal[5] += np.float32(0.35 * texture * cyto_level) * nuc * np.clip(1 + 0.3 * coarse, 0, None)


def optics(signal: np.ndarray, psf_sigma: float, haze: float) -> np.ndarray:
    """The objective: blur by a Gaussian point-spread function of ``psf_sigma`` pixels and add
    out-of-focus haze (``haze`` times the signal blurred over ~12 pixels), which lifts the gaps
    between cells above the camera background. Both 0: the signal unchanged."""
    out = signal
    if psf_sigma > 0:
        out = ndi.gaussian_filter(out, (0, psf_sigma, psf_sigma))
    if haze > 0:
        out = out + np.float32(haze) * ndi.gaussian_filter(out, (0, 12.0, 12.0))
    return out.astype(np.float32, copy=False)


def cell_fill(labels: np.ndarray, psf_sigma: float) -> np.ndarray:
    """The cells of a site as a float mask blurred by the point-spread function, for :func:`spread_stain`."""
    return optics((labels > 0).astype(np.float32)[None], psf_sigma, 0.0)[0]


def spread_stain(signal: np.ndarray, fill: np.ndarray, reach: float, level: float) -> np.ndarray:
    """One channel's clean signal spread over less or more of the field (the realistic profile's foreground
    calibration, :func:`rxlib.synth.writer.calibrate`): ``reach < 0`` takes a floor of ``-reach * level``
    off it, so its dim tails and the haze between cells drop out of the stain's footprint; ``reach > 0``
    adds ``reach * level`` over the cells (``fill``: :func:`cell_fill`), so the stain fills more of each
    cell; 0 leaves it unchanged. ``level``: the channel's mean clean signal inside cells."""
    if reach < 0:
        return np.maximum(signal - np.float32(-reach * level), np.float32(0.0))
    if reach > 0:
        return signal + np.float32(reach * level) * fill
    return signal


@dataclass
class _CellGeometry:
    """The placed cells: their centres and the draws of their outlines (indexed by cell, as centres)."""

    centres: np.ndarray
    cells: _CellDraws


def _cell_fields(g: _CellGeometry, k: np.ndarray, xx: np.ndarray, yy: np.ndarray):
    """Normalised cell radius, nucleus radius and fibre coordinate of cells ``k`` at pixels (xx, yy).

    ``k`` has shape (m, 1, 1) and xx, yy broadcast against it; the same float32 arithmetic serves the
    whole-image path and the bounding-box path, so both give identical values.
    """
    c = g.cells
    cx, cy = g.centres[k, 0].astype(np.float32), g.centres[k, 1].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    cos, sin = np.cos(c.angle[k]).astype(np.float32), np.sin(c.angle[k]).astype(np.float32)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    ca, cb = c.ca[k].astype(np.float32), c.cb[k].astype(np.float32)
    # radial harmonics cos(m theta + phase) as Re(w^m e^{i phase}), w = unit vector of (u/ca, v/cb)
    eu, ev = u / ca, v / cb
    r_ell = np.sqrt(eu * eu + ev * ev)
    w = (eu + 1j * ev).astype(np.complex64) / np.maximum(r_ell, np.float32(1e-6))
    radial = np.ones_like(r_ell)
    power = w
    for m in range(c.harm_amp.shape[1]):
        power = power * w  # w^(m+2)
        ph = c.harm_phase[k, m]
        radial += c.harm_amp[k, m].astype(np.float32) * (
            np.cos(ph).astype(np.float32) * power.real - np.sin(ph).astype(np.float32) * power.imag)
    rc = r_ell / np.maximum(radial, np.float32(0.4))
    ndx, ndy = dx - c.nuc_off[k, 0].astype(np.float32), dy - c.nuc_off[k, 1].astype(np.float32)
    ncos, nsin = np.cos(c.nuc_angle[k]).astype(np.float32), np.sin(c.nuc_angle[k]).astype(np.float32)
    nu, nv = ndx * ncos + ndy * nsin, -ndx * nsin + ndy * ncos
    rn = np.sqrt((nu / c.na[k].astype(np.float32)) ** 2 + (nv / c.nb[k].astype(np.float32)) ** 2)
    fa = c.fibre_angle[k].astype(np.float32)
    vloc = -u * np.sin(fa) + v * np.cos(fa)
    return rc, rn, vloc


def _ownership(g: _CellGeometry, size: int, reach: np.ndarray, method: str = "auto"):
    """Label image (cell k+1 owns a pixel if it is in its nucleus or, outside every nucleus, the cell
    of smallest normalised radius below 1; the lowest index wins ties) and the owner's fields."""
    n = len(g.centres)
    best = np.full((size, size), np.inf, np.float32)
    labels = np.zeros((size, size), np.int32)
    rho_c = np.ones((size, size), np.float32)
    rho_n = np.full((size, size), 9.0, np.float32)
    v_loc = np.zeros((size, size), np.float32)
    half = int(np.ceil(reach.max())) if n else 0
    if method == "patches" or (method == "auto" and size <= 160):
        # small images: every cell's patch at once, then one sort resolves ownership
        patch = 2 * half + 1
        off = np.arange(patch, dtype=np.float32) - half
        k = np.arange(n)[:, None, None]
        x0 = np.floor(g.centres[:, 0]).astype(np.float32)[:, None, None]
        y0 = np.floor(g.centres[:, 1]).astype(np.float32)[:, None, None]
        xx, yy = x0 + off[None, None, :], y0 + off[None, :, None]
        rc, rn, vloc = _cell_fields(g, k, xx, yy)
        xx, yy = np.broadcast_to(xx, rc.shape), np.broadcast_to(yy, rc.shape)
        valid = (xx >= 0) & (xx < size) & (yy >= 0) & (yy < size) & ((rc < 1.0) | (rn < 1.0))
        d = np.where(rn < 1.0, np.float32(0.0), rc)[valid]
        pix = (yy[valid] * size + xx[valid]).astype(np.int64)
        kk = np.broadcast_to(k, rc.shape)[valid]
        order = np.lexsort((kk, d, pix))  # by pixel, then distance, then cell index
        first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]] if len(order) else order
        flat = pix[first]
        labels.ravel()[flat] = kk[first] + 1
        rho_c.ravel()[flat] = np.minimum(rc[valid][first], 1.0)
        rho_n.ravel()[flat] = rn[valid][first]
        v_loc.ravel()[flat] = vloc[valid][first]
        return labels, rho_c, rho_n, v_loc
    coords = np.arange(size, dtype=np.float32)
    for k in range(n):  # large images: one bounding box per cell
        cx, cy = g.centres[k]
        x0, x1 = int(max(0, np.floor(cx - reach[k]))), int(min(size, np.ceil(cx + reach[k]) + 1))
        y0, y1 = int(max(0, np.floor(cy - reach[k]))), int(min(size, np.ceil(cy + reach[k]) + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        kk = np.array([[[k]]])
        rc, rn, vloc = (a[0] for a in _cell_fields(g, kk, coords[None, None, x0:x1], coords[None, y0:y1, None]))
        d = np.where(rn < 1.0, np.float32(0.0), rc)
        sl = (slice(y0, y1), slice(x0, x1))
        claim = (d < best[sl]) & ((rc < 1.0) | (rn < 1.0))
        if not claim.any():
            continue
        best[sl] = np.where(claim, d, best[sl])
        labels[sl] = np.where(claim, k + 1, labels[sl])
        rho_c[sl] = np.where(claim, np.minimum(rc, 1.0), rho_c[sl])
        rho_n[sl] = np.where(claim, rn, rho_n[sl])
        v_loc[sl] = np.where(claim, vloc, v_loc[sl])
    return labels, rho_c, rho_n, v_loc


def _in_cell(labels: np.ndarray, px: np.ndarray, py: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Whether each point lies in the image and in the cell of the given label."""
    size = labels.shape[0]
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    ok[ok] &= labels[iy[ok], ix[ok]] == label[ok]
    return ok


def _scatter(small: np.ndarray, big: np.ndarray, px: np.ndarray, py: np.ndarray, is_big: np.ndarray,
             weight: float) -> None:
    """Add spikes of ``weight`` at the points inside the image, into ``big`` where ``is_big``."""
    size = small.shape[0]
    ix, iy = np.round(px).astype(int), np.round(py).astype(int)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    np.add.at(small, (iy[ok & ~is_big], ix[ok & ~is_big]), weight)
    np.add.at(big, (iy[ok & is_big], ix[ok & is_big]), weight)


def _blur_spikes(spikes: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian spots of peak ~1 at every spike (a blurred unit impulse scaled by 2 pi sigma^2)."""
    if not spikes.any():
        return np.zeros_like(spikes)
    return ndi.gaussian_filter(spikes, sigma, truncate=3.0) * (_TWO_PI * sigma * sigma)


def illumination_field(size: int, vignette: float, centre: tuple[float, float], tilt: tuple[float, float]) -> np.ndarray:
    """Smooth multiplicative field: radial fall-off of ``vignette`` at the corners plus a linear tilt."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    r2 = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / 0.5
    return (1.0 - vignette * r2 + tilt[0] * xx + tilt[1] * yy).astype(np.float32)


def cue_pattern(size: int, class_rank: int, n_ranks: int) -> np.ndarray:
    """Label-tied background grating in [0, 1]: orientation set by the class, period 8 pixels."""
    theta = np.pi * class_rank / max(n_ranks, 1)
    coords = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return (0.5 + 0.5 * np.sin(_TWO_PI * (xx * np.cos(theta) + yy * np.sin(theta)) / 8.0)).astype(np.float32)


def acquire(rng: np.random.Generator, clean: CleanSite, background: np.ndarray, scale: np.ndarray,
            gamma: np.ndarray, gain: np.ndarray, offset: np.ndarray, fields: np.ndarray, photons_per_level: float,
            read_noise: float, cue: np.ndarray | None, cue_channel: int) -> np.ndarray:
    """The microscope: ``gain * field * (background + scale * signal ** gamma) + offset`` + cue + noise, to uint8.

    The noise draws do not depend on the values (shot noise uses a Gaussian of variance v / photons),
    so the cue changes background pixels only.
    """
    size = clean.labels.shape[0]
    z = rng.standard_normal((2, N_CHANNELS, size, size)).astype(np.float32)
    value = expose(clean.signal, gamma.astype(np.float32)[:, None, None], background[:, None, None],
                   scale[:, None, None], gain[:, None, None], fields, offset[:, None, None]).astype(np.float32)
    if cue is not None:
        value[cue_channel - 1] += np.where(clean.labels == 0, cue, 0.0).astype(np.float32)
    return record(value, z, photons_per_level, read_noise)


def expose(signal: np.ndarray, gamma, background, scale, gain, field, offset) -> np.ndarray:
    """The grey level the camera expects: ``gain * field * (background + scale * signal ** gamma) + offset``
    (per-channel values as scalars or shaped to broadcast over the images)."""
    return gain * field * (background + scale * np.maximum(signal, 0.0) ** gamma) + offset


def record(value: np.ndarray, z: np.ndarray, photons_per_level: float, read_noise: float) -> np.ndarray:
    """The camera's 8-bit reading of ``value``: shot noise of variance ``value / photons_per_level`` and
    Gaussian read noise (``z``: two standard-normal draws per pixel), rounded and clipped to 0..255."""
    value = np.maximum(value, 0.0)
    noisy = value + np.sqrt(value / photons_per_level) * z[0] + read_noise * z[1]
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
