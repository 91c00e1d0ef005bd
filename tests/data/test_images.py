import numpy as np
import pytest
from PIL import Image

from rxlib.data.images import load_site
from rxlib.data.metadata import read_metadata
from rxlib.data.scan import scan
from rxlib.io import CorruptImageError, ImageShapeError, MissingImageError


def test_load_site_equals_reading_each_png(tiny_root):
    stack = load_site(tiny_root, "HEPG2-01", 1, "B03", 2)
    assert stack.shape == (6, 16, 16) and stack.dtype == np.uint8
    for c in range(6):
        own = np.asarray(Image.open(tiny_root / f"images/HEPG2-01/Plate1/B03_s2_w{c + 1}.png"))
        np.testing.assert_array_equal(stack[c], own)


def test_missing_channel_names_the_file(tiny_root):
    (tiny_root / "images/HEPG2-01/Plate1/B03_s1_w5.png").unlink()
    with pytest.raises(MissingImageError, match=r"B03_s1_w5\.png"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)


def test_truncated_png_names_the_file(tiny_root):
    path = tiny_root / "images/HEPG2-01/Plate1/B03_s1_w2.png"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptImageError, match=r"B03_s1_w2\.png"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)


def test_not_a_png_names_the_file(tiny_root):
    path = tiny_root / "images/HEPG2-01/Plate1/B03_s1_w3.png"
    path.write_text("this is not an image")
    with pytest.raises(CorruptImageError, match=r"B03_s1_w3\.png"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)


def test_wrong_size_names_the_file(tiny_root):
    Image.fromarray(np.zeros((8, 16), np.uint8)).save(tiny_root / "images/HEPG2-01/Plate1/B03_s1_w4.png")
    with pytest.raises(ImageShapeError, match=r"B03_s1_w4\.png: image is 8x16.*16x16"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)
    with pytest.raises(ImageShapeError, match=r"B03_s1_w1\.png: image is 16x16, expected 32x32"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1, expected_size=32)


def test_rgb_png_is_rejected(tiny_root):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tiny_root / "images/HEPG2-01/Plate1/B03_s1_w1.png")
    with pytest.raises(ImageShapeError, match="single-channel"):
        load_site(tiny_root, "HEPG2-01", 1, "B03", 1)


def test_site_without_any_image(tiny_root):
    with pytest.raises(MissingImageError, match="no images for site HEPG2-01 plate 1 B05 s1"):
        load_site(tiny_root, "HEPG2-01", 1, "B05", 1)


def test_scan_reports_every_problem_in_one_pass(tiny_root):
    images = tiny_root / "images/HEPG2-01/Plate1"
    (images / "B03_s1_w5.png").unlink()
    (images / "B04_s2_w1.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(images / "C03_s1_w6.png")
    for c in range(1, 7):
        (images / f"B02_s2_w{c}.png").unlink()
    problems = scan(tiny_root, read_metadata(tiny_root), progress=False, expected_size=16)
    kinds = dict(zip(problems["site_id"], problems["kind"]))
    assert kinds == {"HEPG2-01_1_B03_1": "missing_channel", "HEPG2-01_1_B04_2": "corrupt_image",
                     "HEPG2-01_1_C03_1": "wrong_size", "HEPG2-01_1_B02_2": "no_images"}
    assert len(problems) == 4


def test_real_sites_missing_w5_w6(real_rxrx1):
    root = real_rxrx1 / "kaggle-2023"
    stack = load_site(root, "HEPG2-01", 1, "B02", 1, expected_size=512)
    assert stack.shape == (6, 512, 512) and stack.dtype == np.uint8
    with pytest.raises(MissingImageError, match=r"train/HEPG2-01/Plate1/B02_s2_w5\.png"):
        load_site(root, "HEPG2-01", 1, "B02", 2)
    test_site = load_site(root, "HEPG2-08", 2, "B02", 1)      # test/ folder of the Kaggle layout
    assert test_site.shape == (6, 512, 512)
