"""minisegnet.data.digits and nuclei: the two real data sets shipped as .npz files."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

import minisegnet.data as data
from minisegnet.data import ArrayDataset, digit_scenes, nuclei
from minisegnet.data.digits import CLASS_NAMES, load_glyphs, split_indices

DATA_DIR = Path(data.__file__).parent


def test_shipped_files_are_small_and_pickle_free():
    files = sorted(DATA_DIR.glob("*.npz"))
    assert {f.name for f in files} == {"digits.npz", "nuclei.npz"}
    assert sum(f.stat().st_size for f in files) < 1_000_000
    for f in files:
        with zipfile.ZipFile(f) as z:
            assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist()), f"{f.name} is not compressed"
        with np.load(f, allow_pickle=False) as arrays:  # raises if anything needs pickle
            assert "source" in arrays.files


def test_glyphs_are_the_sklearn_digits():
    glyphs, labels = load_glyphs()
    assert glyphs.shape == (1797, 8, 8) and glyphs.dtype == np.uint8 and glyphs.max() == 16
    assert labels.shape == (1797,) and set(np.unique(labels)) == set(range(10))
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    np.testing.assert_array_equal(glyphs, ref.images)
    np.testing.assert_array_equal(labels, ref.target)


def test_digit_scenes_shapes_dtypes_and_classes():
    ds = digit_scenes(40, size=64, seed=0)
    assert isinstance(ds, ArrayDataset)
    assert ds.images.shape == (40, 3, 64, 64) and ds.images.dtype == np.float32
    assert ds.masks.shape == (40, 64, 64) and ds.masks.dtype == np.int64
    assert 0 <= ds.images.min() and ds.images.max() <= 1
    assert ds.num_classes == 11 and ds.class_names == CLASS_NAMES and ds.class_names[1] == "0"
    assert set(np.unique(ds.masks)) == set(range(11))
    per_image = [len(np.unique(m)) - 1 for m in ds.masks]
    assert min(per_image) >= 1 and max(per_image) <= 4


def test_digit_scenes_determinism_and_sizes():
    a, b = digit_scenes(6, seed=5), digit_scenes(6, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(digit_scenes(6, seed=6).masks, a.masks)
    assert digit_scenes(3, size=48).images.shape == (3, 3, 48, 48)
    for bad in (dict(n=0), dict(n=2, size=16), dict(n=2, split="test")):
        with pytest.raises(ValueError):
            digit_scenes(**bad)


def test_digit_splits_use_disjoint_glyphs(monkeypatch):
    train, val = split_indices("train", 1797), split_indices("val", 1797)
    assert len(train) + len(val) == 1797 and not set(train) & set(val)
    np.testing.assert_array_equal(split_indices("all", 1797), np.arange(1797))
    # Fake glyphs: every train glyph is a "3", every val glyph a "7"; scenes must only show their split's digit.
    glyphs = np.full((1797, 8, 8), 16, np.uint8)
    labels = np.where(np.arange(1797) < len(train), 3, 7).astype(np.uint8)
    monkeypatch.setattr("minisegnet.data.digits.load_glyphs", lambda: (glyphs, labels))
    assert set(np.unique(digit_scenes(8, split="train").masks)) == {0, 1 + 3}
    assert set(np.unique(digit_scenes(8, split="val").masks)) == {0, 1 + 7}
    assert set(np.unique(digit_scenes(32, split="all").masks)) == {0, 1 + 3, 1 + 7}


def test_nuclei_train_and_val_patches():
    train, val = nuclei("train"), nuclei("val")
    for ds in (train, val):
        assert ds.images.shape[1:] == (3, 64, 64) and ds.images.dtype == np.float32
        assert ds.masks.shape[1:] == (64, 64) and ds.masks.dtype == np.int64
        assert ds.num_classes == 2 and ds.class_names == ("background", "nucleus")
        assert 0 <= ds.images.min() and ds.images.max() <= 1
        np.testing.assert_array_equal(ds.images[:, 0], ds.images[:, 2])  # grayscale copied to 3 channels
        np.testing.assert_array_equal(ds.masks, (ds.instances > 0).astype(np.int64))
        assert 0.05 < ds.masks.mean() < 0.5
    assert len(train) == 165 and len(val) == 16
    # The splits come from different columns: no val patch equals any train patch.
    flat_train = train.images[:, 0].reshape(len(train), -1)
    for patch in val.images[:, 0].reshape(len(val), -1):
        assert not (flat_train == patch).all(axis=1).any()


def test_nuclei_split_columns_are_disjoint():
    from minisegnet.data.nuclei import load_nuclei, normalize_percentile

    image, _ = load_nuclei()
    full = normalize_percentile(image)
    val = nuclei("val", size=32)
    # Patches are cut row by row from the left edge of their region: val starts at column 384.
    right = full[:, 384:]
    assert val.images.shape[0] == (512 // 32) * (128 // 32)
    np.testing.assert_array_equal(val.images[0, 0], right[:32, :32])
    np.testing.assert_array_equal(nuclei("train", size=32, stride=32).images[0, 0], full[:32, :32])
    with pytest.raises(ValueError, match="split"):
        nuclei("test")
    with pytest.raises(ValueError, match="larger"):
        nuclei("val", size=256)


def test_one_loader_reads_both_shipped_files_once_and_names_a_missing_one(tmp_path, monkeypatch):
    from minisegnet.data import shipped

    assert shipped.load_shipped("digits") is shipped.load_shipped("digits")  # read once
    assert set(shipped.load_shipped("nuclei")) >= {"image", "instances"}
    monkeypatch.setattr(shipped, "HERE", tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"nowhere\.npz is missing; rebuild it with .*build_datasets\.py nowhere"
    ):
        shipped.load_shipped("nowhere")
