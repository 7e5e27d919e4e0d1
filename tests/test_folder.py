"""minisegnet.data.folder: FolderDataset on files written into tmp_path, and every bad case."""

import numpy as np
import pytest
from PIL import Image

from minisegnet.data import FolderDataset, colorize, voc_palette


def _write(root, stem, image, mask, image_ext=".png", mask_mode=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{stem}{image_ext}")
    if mask_mode == "P":
        m = Image.fromarray(mask.astype(np.uint8), mode="P")
        m.putpalette(voc_palette().ravel().tolist())
        m.save(root / "masks" / f"{stem}.png")
    elif mask_mode == "RGB":
        Image.fromarray(colorize(mask)).save(root / "masks" / f"{stem}.png")
    else:
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{stem}.png")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def good(tmp_path, rng):
    """Four pairs, one of each kind: L index mask, P-mode mask, RGB palette mask, JPEG image."""
    masks = {s: rng.integers(0, 4, size=(6, 8)) for s in "abcd"}
    masks["b"][0, :3] = 255  # an ignore label
    rgb = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    _write(tmp_path, "a", rgb, masks["a"])
    _write(tmp_path, "b", rgb[..., 0], masks["b"], mask_mode="P")  # a grayscale image too
    _write(tmp_path, "c", rgb, masks["c"], mask_mode="RGB")
    _write(tmp_path, "d", rgb, masks["d"], image_ext=".jpg")
    (tmp_path / "images" / "notes.txt").write_text("not an image: ignored")
    return tmp_path, rgb, masks


def test_reads_every_kind_of_pair(good):
    root, rgb, masks = good
    ds = FolderDataset(root)
    assert len(ds) == 4 and ds.stems == ["a", "b", "c", "d"]
    for i, stem in enumerate("abcd"):
        image, mask = ds[i]
        assert image.shape == (3, 6, 8) and image.dtype == np.float32
        assert mask.shape == (6, 8) and mask.dtype == np.int64
        np.testing.assert_array_equal(mask, masks[stem])
        assert 0 <= image.min() and image.max() <= 1
    np.testing.assert_allclose(ds[0][0], rgb.transpose(2, 0, 1) / 255, atol=1e-6)  # PNG is exact
    gray = ds[1][0]
    np.testing.assert_array_equal(gray[0], gray[1])  # grayscale expanded to 3 equal channels
    np.testing.assert_allclose(gray[0], rgb[..., 0] / 255, atol=1e-6)
    assert np.abs(ds[3][0] - rgb.transpose(2, 0, 1) / 255).mean() < 0.2  # JPEG: close, not exact
    assert ds[1][1][0, 0] == 255  # ignore label kept
    assert ds.num_classes == 4  # largest label 3, 255 not counted
    assert ds.class_names[0] == "background" and len(ds.class_names) == 4
    assert ds.palette.shape == (4, 3)


def test_rgba_image_drops_alpha_and_num_classes_given(tmp_path, rng):
    rgba = rng.integers(0, 256, size=(5, 5, 4), dtype=np.uint8)
    _write(tmp_path, "x", rgba, np.ones((5, 5)))
    ds = FolderDataset(tmp_path, num_classes=2, class_names=["bg", "thing"])
    image, _ = ds[0]
    np.testing.assert_allclose(image, rgba[..., :3].transpose(2, 0, 1) / 255, atol=1e-6)
    assert ds.num_classes == 2 and ds.class_names == ("bg", "thing")


def test_custom_rgb_palette(tmp_path):
    palette = np.array([[0, 0, 0], [0, 255, 0]], np.uint8)
    mask = np.array([[0, 1], [1, 0]])
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images" / "p.png")
    Image.fromarray(palette[mask]).save(tmp_path / "masks" / "p.png")
    np.testing.assert_array_equal(FolderDataset(tmp_path, palette=palette)[0][1], mask)
    with pytest.raises(ValueError, match=r"p\.png.*unknown colour \(0, 255, 0\) at pixel \(row 0, column 1\)"):
        FolderDataset(tmp_path)[0]  # VOC has no pure green


def test_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="images"):
        FolderDataset(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="masks"):
        FolderDataset(tmp_path)


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        FolderDataset(tmp_path)


def test_image_without_mask_and_mask_without_image(good):
    root = good[0]
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images" / "lonely.png")
    with pytest.raises(ValueError, match=r"no mask .*lonely\.png"):
        FolderDataset(root)
    (root / "images" / "lonely.png").unlink()
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(root / "masks" / "orphan.png")
    with pytest.raises(ValueError, match=r"no image .*orphan\.png"):
        FolderDataset(root)


def test_corrupt_and_truncated_files_name_the_path(good):
    root = good[0]
    (root / "images" / "a.png").write_bytes(b"this is not a png")
    ds = FolderDataset(root)
    with pytest.raises(ValueError, match=r"cannot read .*a\.png"):
        ds[0]
    data = (root / "masks" / "c.png").read_bytes()
    (root / "masks" / "c.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot read .*c\.png"):
        ds[2]


def test_size_mismatch_names_both_files(good):
    root = good[0]
    Image.fromarray(np.zeros((7, 8), np.uint8)).save(root / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"a\.png is 6x8 but mask .*a\.png is 7x8"):
        FolderDataset(root)[0]


def test_label_out_of_range_names_file(good):
    with pytest.raises(ValueError, match=r"d\.png has label 3, outside 0\.\.2 for 3 classes"):
        FolderDataset(good[0], num_classes=3)[3]
    with pytest.raises(ValueError, match=r"\.png has label 3, outside 0\.\.2"):  # every mask read once
        FolderDataset(good[0], num_classes=3).check_labels()


def test_duplicate_stems_jpeg_masks_and_bad_mode(good):
    root = good[0]
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "images" / "a.jpg")
    with pytest.raises(ValueError, match=r"a\.jpg.*same name"):
        FolderDataset(root)
    (root / "images" / "a.jpg").unlink()
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(root / "masks" / "a.jpg")
    with pytest.raises(ValueError, match=r"a\.jpg is a JPEG"):
        FolderDataset(root)
    (root / "masks" / "a.jpg").unlink()
    Image.fromarray(np.zeros((6, 8), np.float32), mode="F").save(root / "masks" / "a.tif")
    (root / "masks" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"a\.tif has PIL mode 'F'"):
        FolderDataset(root)[0]


def test_mask_values_map_black_and_white_masks_and_unmapped_ones_are_refused(tmp_path, rng):
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 2:6] = 255
    for stem in "ab":
        _write(tmp_path, stem, rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), mask)
    with pytest.raises(ValueError, match=r"no foreground label \(values: 0, 255\); black-and-white masks\?"):
        FolderDataset(tmp_path).check_labels()
    ds = FolderDataset(tmp_path, mask_values="0,255")
    assert ds.num_classes == 2 and ds.check_labels() == 2
    np.testing.assert_array_equal(ds[1][1], mask // 255)
    _write(tmp_path, "b", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), mask // 2)  # 127: not listed
    with pytest.raises(ValueError, match=r"mask .*b\.png holds the value 127, which --mask-values 0,255 lacks"):
        FolderDataset(tmp_path, mask_values=[0, 255]).check_labels()
