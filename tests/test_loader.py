"""minisegnet.data.loader and augment: batching, shuffling, drop_last, resumable epochs, augmentations."""

import numpy as np
import pytest

from minisegnet.data import ArrayDataset, Compose, DataLoader, flip, random_crop, rot90, shapes


def _numbered(n=10, H=4, W=4):
    """A data set whose image i is filled with i and whose mask encodes i and each pixel's position."""
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None] / n, (n, 3, H, W)).copy()
    pos = np.arange(H * W).reshape(H, W)
    masks = np.arange(n)[:, None, None] * 100 + pos
    return ArrayDataset(images, masks, [f"c{i}" for i in range(n * 100)])


def _ids(masks):
    return [int(m.min()) // 100 for m in masks]


def test_batches_in_order_with_the_right_shapes_and_dtypes():
    loader = DataLoader(_numbered(10), batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    images, masks = batches[0]
    assert images.shape == (4, 3, 4, 4) and images.dtype == np.float32
    assert masks.shape == (4, 4, 4) and masks.dtype == np.int64
    assert sum((_ids(m) for _, m in batches), []) == list(range(10))


def test_drop_last():
    loader = DataLoader(_numbered(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]
    with pytest.raises(ValueError, match="no batch"):
        DataLoader(_numbered(3), batch_size=4, drop_last=True)


def test_shuffle_is_a_permutation_reproducible_per_epoch():
    a = DataLoader(_numbered(10), batch_size=3, shuffle=True, seed=7)
    epoch0 = sum((_ids(m) for _, m in a), [])
    epoch1 = sum((_ids(m) for _, m in a), [])
    assert sorted(epoch0) == list(range(10)) and sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1 and epoch0 != list(range(10))
    assert a.epoch == 2
    # A fresh loader told "epoch 1" (a resumed run) sees exactly epoch 1's order.
    b = DataLoader(_numbered(10), batch_size=3, shuffle=True, seed=7)
    b.set_epoch(1)
    assert sum((_ids(m) for _, m in b), []) == epoch1
    c = DataLoader(_numbered(10), batch_size=3, shuffle=True, seed=8)
    assert sum((_ids(m) for _, m in c), []) != epoch0


def _moves_together(images, masks, original):
    # Pixel values travel with their labels: the mask's position code picks the same pixel of the original.
    for image, mask in zip(images, masks):
        i = int(mask.min()) // 100
        pos = mask % 100
        src = original.images[i][:, pos // 4, pos % 4]
        np.testing.assert_array_equal(image, src)


def test_augmentations_move_image_and_mask_together():
    rng = np.random.default_rng(0)
    n, H, W = 6, 4, 4
    images = rng.random((n, 3, H, W)).astype(np.float32)
    masks = np.arange(n)[:, None, None] * 100 + np.arange(H * W).reshape(H, W)
    ds = ArrayDataset(images, masks, [str(i) for i in range(n * 100)])
    for augment in (flip, rot90, Compose([flip, rot90]), Compose([rot90, random_crop(3)])):
        loader = DataLoader(ds, batch_size=3, shuffle=True, augment=augment)
        seen = set()
        for _ in range(8):
            for batch_images, batch_masks in loader:
                _moves_together(batch_images, batch_masks, ds)
                seen.update(tuple(m.ravel()) for m in batch_masks)
        assert len(seen) > n, f"{augment} never changed anything"


def test_augmentations_are_reproducible_and_keep_multilabel_masks_aligned():
    ds = shapes(6, size=32, seed=1, multilabel=True)
    aug = Compose([flip, rot90, random_crop(24)])
    first = list(DataLoader(ds, batch_size=3, shuffle=True, seed=3, augment=aug))
    again = DataLoader(ds, batch_size=3, shuffle=True, seed=3, augment=aug)
    for (i1, m1), (i2, m2) in zip(first, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(m1, m2)
    images, masks = first[0]
    assert images.shape == (3, 3, 24, 24) and masks.shape == (3, 5, 24, 24) and masks.dtype == np.uint8
    # Same geometry on both: apply one augmentation by hand and compare with a plain flip of each.
    image, mask = ds[0]
    rng = np.random.default_rng(0)
    out_image, out_mask = rot90(image, mask, rng)
    k = int(np.random.default_rng(0).integers(4))
    np.testing.assert_array_equal(out_image, np.rot90(image, k, axes=(1, 2)))
    np.testing.assert_array_equal(out_mask, np.rot90(mask, k, axes=(1, 2)))


def test_rot90_keeps_non_square_shapes_and_crop_checks_size():
    image, mask = np.zeros((3, 4, 6), np.float32), np.zeros((4, 6), np.int64)
    for seed in range(8):
        out_image, out_mask = rot90(image, mask, np.random.default_rng(seed))
        assert out_image.shape == (3, 4, 6) and out_mask.shape == (4, 6)
    with pytest.raises(ValueError, match="5, 5.*4x6"):
        random_crop(5)(image, mask, np.random.default_rng(0))
    assert random_crop((2, 3))(image, mask, np.random.default_rng(0))[1].shape == (2, 3)
    with pytest.raises(ValueError, match="last two"):
        flip(image, np.zeros((4, 5)), np.random.default_rng(0))


def test_bad_arguments_and_mixed_sizes():
    ds = _numbered(4)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="augment"):
        DataLoader(ds, augment="flip")
    with pytest.raises(TypeError, match="callables"):
        Compose([flip, 3])
    with pytest.raises(ValueError, match="random_crop"):
        random_crop(0)

    class Mixed:
        num_classes, class_names = 2, ("a", "b")

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((3, 4 + i, 4), np.float32), np.zeros((4 + i, 4), np.int64)

    with pytest.raises(ValueError, match="different shapes"):
        list(DataLoader(Mixed(), batch_size=2))
    assert len(list(DataLoader(Mixed(), batch_size=1))) == 2


def test_seed_and_epoch_are_two_numbers_so_seed_0_epoch_1_differs_from_seed_1_epoch_0():
    a = DataLoader(_numbered(20), batch_size=20, shuffle=True, seed=0)
    a.set_epoch(1)
    b = DataLoader(_numbered(20), batch_size=20, shuffle=True, seed=1)
    assert _ids(next(iter(a))[1]) != _ids(next(iter(b))[1])
    expected = np.random.default_rng([0, 1]).permutation(20).tolist()  # the recipe's (seed, epoch) seeding
    a.set_epoch(1)
    assert _ids(next(iter(a))[1]) == expected
