import numpy as np

from rxlib.segmentation import count_nuclei, grow_cells, otsu_threshold, segment_nuclei


def _discs(centres, radius=4, size=48):
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 10.0)
    for y, x in centres:
        image[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = 200.0
    return image


def test_otsu_separates_two_levels():
    image = np.r_[np.full(100, 10.0), np.full(100, 200.0)]
    assert 10 < otsu_threshold(image) < 200


def test_counts_separate_nuclei_and_drops_debris():
    image = _discs([(10, 10), (10, 35), (35, 20)])
    image[44, 44] = 255                                    # one bright pixel of debris
    assert count_nuclei(image) == 3


def test_grow_cells_keeps_nucleus_labels():
    image = _discs([(12, 12), (34, 34)])
    nuclei = segment_nuclei(image)
    cells = grow_cells(nuclei, _discs([(12, 12), (34, 34)], radius=9), max_distance=6)
    assert set(np.unique(cells)) == {0, 1, 2}
    assert (cells[nuclei > 0] == nuclei[nuclei > 0]).all()
    assert (cells > 0).sum() > (nuclei > 0).sum()


def test_touching_discs_are_split():
    image = _discs([(24, 16), (24, 31)], radius=8)            # centres 15 apart: the discs overlap
    labels = segment_nuclei(image)
    assert labels.max() == 2
    assert labels[24, 16] != labels[24, 31] and labels[24, 16] > 0 and labels[24, 31] > 0


def test_finds_n_of_n_separate_nuclei():
    centres = [(y, x) for y in (10, 30, 50, 70) for x in (10, 30, 50, 70)]
    image = _discs(centres, radius=5, size=80)
    image += np.random.default_rng(0).normal(0, 5, image.shape)
    labels = segment_nuclei(image)
    assert labels.max() == len(centres)
    assert len({labels[y, x] for y, x in centres}) == len(centres)


def test_grow_cells_splits_between_two_nuclei():
    image = _discs([(24, 14), (24, 34)], radius=4)
    cytoplasm = _discs([(24, 14), (24, 34)], radius=11)       # the two cell bodies touch
    cells = grow_cells(segment_nuclei(image), cytoplasm)
    assert cells[24, 8] != cells[24, 40] and cells[24, 8] > 0 and cells[24, 40] > 0
    assert cells.max() == 2


def test_blank_image_has_no_nuclei():
    assert count_nuclei(np.zeros((32, 32))) == 0
    assert grow_cells(np.zeros((32, 32), int), np.ones((32, 32))).max() == 0
