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
