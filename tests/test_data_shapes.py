"""minisegnet.data.shapes and ArrayDataset: the synthetic shapes data set."""

import numpy as np
import pytest

from minisegnet.data import ArrayDataset, shapes
from minisegnet.data.shapes import CLASS_NAMES, SHAPE_NAMES


@pytest.fixture(scope="module")
def ds():
    return shapes(48, size=64, seed=3)


def test_shapes_dtypes_ranges_and_protocol(ds):
    assert isinstance(ds, ArrayDataset) and len(ds) == 48
    assert ds.images.shape == (48, 3, 64, 64) and ds.images.dtype == np.float32
    assert ds.masks.shape == (48, 64, 64) and ds.masks.dtype == np.int64
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.num_classes == 6 and ds.class_names == CLASS_NAMES
    assert ds.palette.shape == (6, 3) and ds.palette.dtype == np.uint8
    image, mask = ds[5]
    np.testing.assert_array_equal(image, ds.images[5])
    np.testing.assert_array_equal(mask, ds.masks[5])
    assert ds[-1][1] is not None
    with pytest.raises(IndexError, match="48"):
        ds[48]


def test_every_class_appears_and_every_image_has_a_shape(ds):
    assert set(np.unique(ds.masks)) == set(range(6))
    assert (ds.masks.reshape(len(ds), -1) > 0).any(axis=1).all()
    fg = (ds.masks > 0).mean()
    assert 0.1 < fg < 0.6, f"foreground fraction {fg:.2f}"


def test_same_seed_same_data_other_seed_other_data(ds):
    again = shapes(48, size=64, seed=3)
    np.testing.assert_array_equal(again.images, ds.images)
    np.testing.assert_array_equal(again.masks, ds.masks)
    other = shapes(48, size=64, seed=4)
    assert not np.array_equal(other.masks, ds.masks)


def test_colour_is_not_the_class(ds):
    # The mean colour of each class's pixels must vary a lot across images: colour is random.
    for c in range(1, 6):
        present = [i for i in range(len(ds)) if (ds.masks[i] == c).sum() > 30]
        means = [ds.images[i][:, ds.masks[i] == c].mean(axis=1) for i in present]
        assert np.std(means, axis=0).min() > 0.1, f"class {c} has nearly the same colour everywhere"


def test_shapes_stand_out_from_their_surroundings(ds):
    # Learnable: on average a shape's pixels differ clearly from the background pixels of its image.
    gaps = []
    for i in range(len(ds)):
        fg, bg = ds.images[i][:, ds.masks[i] > 0], ds.images[i][:, ds.masks[i] == 0]
        gaps.append(np.linalg.norm(fg.mean(axis=1) - bg.mean(axis=1)))
    assert np.median(gaps) > 0.25


def test_multilabel_channels_agree_with_multiclass_mask(ds):
    ml = shapes(48, size=64, seed=3, multilabel=True)
    np.testing.assert_array_equal(ml.images, ds.images)  # the same images in both modes
    assert ml.masks.shape == (48, 5, 64, 64) and ml.masks.dtype == np.uint8
    assert ml.num_classes == 5 and ml.class_names == SHAPE_NAMES and ml.multilabel
    covered = ml.masks.sum(axis=1)
    # Background exactly where no channel is on.
    np.testing.assert_array_equal(covered == 0, ds.masks == 0)
    # Where exactly one shape covers a pixel, the multi-class label names that shape.
    only = covered == 1
    channel = ml.masks.argmax(axis=1)
    np.testing.assert_array_equal(ds.masks[only], channel[only] + 1)
    # Everywhere, the visible (top) shape's channel is on: occlusion hides, it never invents.
    n, y, x = np.nonzero(ds.masks)
    assert ml.masks[n, ds.masks[n, y, x] - 1, y, x].all()
    assert (covered > 1).any(), "some shapes overlap, and multi-label keeps both"


def test_max_hidden_bounds_how_much_of_a_shape_later_shapes_cover():
    # max_hidden=0: no shape may cover any visible pixel of another, so no pixel is in two shapes.
    apart = shapes(64, size=32, seed=4, multilabel=True, max_hidden=0)
    assert apart.masks.sum(axis=1).max() == 1

    # Each later shape hides at most max_hidden of what is visible, so with 3 shapes at least
    # (1 - max_hidden)**2 of every shape shows; max_hidden=1 (any overlap) hides some far more.
    def least_visible(max_hidden):
        full = shapes(256, size=32, seed=4, multilabel=True, max_hidden=max_hidden).masks
        shown = shapes(256, size=32, seed=4, max_hidden=max_hidden).masks
        return min(
            (shown[n] == k + 1).sum() / full[n, k].sum() for n in range(256) for k in range(5) if full[n, k].any()
        )

    assert least_visible(1 / 3) >= 4 / 9 - 1e-9
    assert least_visible(1.0) < 0.2
    with pytest.raises(ValueError, match="max_hidden"):
        shapes(2, size=32, max_hidden=1.5)


def test_other_sizes_and_bad_arguments():
    small = shapes(4, size=32, seed=0)
    assert small.images.shape == (4, 3, 32, 32)
    assert shapes(3, size=40, seed=0, max_shapes=1).masks.shape == (3, 40, 40)
    for bad in (dict(n=0), dict(n=2.5), dict(n=2, size=8), dict(n=2, max_shapes=0)):
        with pytest.raises(ValueError):
            shapes(**bad)


def test_array_dataset_checks_its_arrays():
    images = np.zeros((2, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        ArrayDataset(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)), ["a", "b"])
    with pytest.raises(ValueError, match="matching images"):
        ArrayDataset(images, np.zeros((2, 8, 7)), ["a", "b"])
    with pytest.raises(ValueError, match="channels"):
        ArrayDataset(images, np.zeros((2, 3, 8, 8)), ["a", "b"])
    with pytest.raises(TypeError, match="int"):
        ArrayDataset(images, np.zeros((2, 8, 8)), ["a", "b"])[0:1]
    assert "2 images of 8x8" in repr(ArrayDataset(images, np.zeros((2, 8, 8)), ["a", "b"]))


def test_rotate_turns_shapes_and_keeps_classes():
    upright, turned = shapes(32, size=48, seed=2), shapes(32, size=48, seed=2, rotate=True)
    assert not np.array_equal(upright.masks, turned.masks)
    assert set(np.unique(turned.masks)) == set(range(6))
    # Upright squares are axis-aligned: each square's pixels fill their bounding box (unless hidden).
    full = []
    for m in upright.masks:
        ys, xs = np.nonzero(m == 1)
        if len(ys):
            full.append(len(ys) / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    assert max(full) == 1.0
