"""minisegnet.data.palette: the VOC colour map, colorize and its inverse mask_from_rgb."""

import numpy as np
import pytest

from minisegnet.data import colorize, mask_from_rgb, voc_palette


def test_voc_palette_known_colours():
    p = voc_palette()
    assert p.shape == (256, 3) and p.dtype == np.uint8
    assert tuple(p[0]) == (0, 0, 0)
    assert tuple(p[1]) == (128, 0, 0)
    assert tuple(p[2]) == (0, 128, 0)
    assert tuple(p[15]) == (192, 128, 128)  # "person"
    assert tuple(p[20]) == (0, 64, 128)  # "tvmonitor"
    assert tuple(p[255]) == (224, 224, 192)  # the VOC "ignore" border colour
    assert len({tuple(c) for c in p}) == 256, "all 256 colours differ"
    np.testing.assert_array_equal(voc_palette(21), p[:21])


def test_round_trip_colorize_then_mask_from_rgb():
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 21, size=(7, 9))
    mask[0, 0] = 255
    rgb = colorize(mask)
    assert rgb.shape == (7, 9, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (224, 224, 192)
    back = mask_from_rgb(rgb)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, mask)


def test_custom_palette_and_batched_colorize():
    palette = np.array([[0, 0, 0], [255, 255, 255], [10, 200, 30]], dtype=np.uint8)
    mask = np.array([[[0, 1], [2, 1]], [[2, 2], [0, 0]]])
    rgb = colorize(mask, palette)
    assert rgb.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(mask_from_rgb(rgb[0], palette), mask[0])


def test_unknown_colour_names_colour_and_position():
    rgb = colorize(np.zeros((4, 5), dtype=np.int64))
    rgb[2, 3] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) at pixel \(row 2, column 3\)"):
        mask_from_rgb(rgb)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="no colour"):
        colorize(np.array([[0, 3]]), voc_palette(3))
    with pytest.raises(TypeError, match="integer mask"):
        colorize(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"\(C, 3\)"):
        mask_from_rgb(np.zeros((2, 2, 3), np.uint8), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="same colour twice"):
        mask_from_rgb(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        mask_from_rgb(np.zeros((2, 2), np.uint8))
