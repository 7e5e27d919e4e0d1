"""minisegnet/io.py: checkpoints round-trip without pickle, are written atomically, and fail clearly."""

import os
import zipfile

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import io, nn, optim


def small_model():
    nn.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU())


def test_round_trip_of_model_optimiser_and_config(tmp_path):
    model = small_model()
    model.bn1 = None  # a plain attribute: not part of the state
    params = list(model.parameters())
    opt = optim.Adam(params, lr=0.01)
    for p in params:
        p.grad = np.ones_like(p.data)
    opt.step()
    obj = {
        "model": model.state_dict(),
        "optim": opt.state_dict(),
        "config": {"name": "run", "sizes": [1, 2, 3], "nested": {"flag": True, "none": None}, "empty": {}},
        "epoch": 3,
        "best": np.float32(0.5),
        "history": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}],
    }
    path = tmp_path / "ckpt.npz"
    assert msn.save(path, obj) == str(path)
    back = msn.load(path)
    assert list(back) == list(obj) and list(back["model"]) == list(obj["model"])
    for k, v in obj["model"].items():
        assert back["model"][k].dtype == v.dtype and np.array_equal(back["model"][k], v)
    assert back["config"] == {"name": "run", "sizes": [1, 2, 3], "nested": {"flag": True, "none": None}, "empty": {}}
    assert back["epoch"] == 3 and back["best"] == 0.5 and back["history"] == obj["history"]
    assert back["optim"]["betas"] == [0.9, 0.999] and back["optim"]["step.0"] == 1

    fresh = small_model()
    fresh.load_state_dict(back["model"])
    opt2 = optim.Adam(list(fresh.parameters()))
    opt2.load_state_dict(back["optim"])
    assert opt2.betas == (0.9, 0.999) and opt2.lr == 0.01
    assert np.array_equal(opt2.state["exp_avg"][0], opt.state["exp_avg"][0])


def test_the_file_is_a_plain_npz_that_loads_without_pickle(tmp_path):
    path = tmp_path / "c.npz"
    io.save(path, {"a": {"w": np.arange(3.0)}, "n": 1})
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["__meta__", "a/w"]


def test_tensors_are_saved_as_arrays(tmp_path):
    t = msn.tensor([1.0, 2.0], requires_grad=True)
    io.save(tmp_path / "t.npz", {"t": t})
    assert np.array_equal(io.load(tmp_path / "t.npz")["t"], [1.0, 2.0])


def test_atomic_write_keeps_the_old_file_when_writing_crashes(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    io.save(path, {"epoch": 1, "w": np.zeros(4)})

    def crash(f, arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(io, "_write_npz", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save(path, {"epoch": 2, "w": np.ones(4)})
    assert io.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # the temporary file was removed


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        io.load(missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="junk.npz"):
        io.load(junk)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(2))  # an npz, but not one written by save
    with pytest.raises(ValueError, match="foreign.npz"):
        io.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        io.load(pickled)
    with zipfile.ZipFile(tmp_path / "truncated.npz", "w") as z:
        z.writestr("__meta__.npy", b"\x93NUMPY broken")
    with pytest.raises(ValueError, match="truncated.npz"):
        io.load(tmp_path / "truncated.npz")


def test_values_that_need_pickle_are_refused(tmp_path):
    with pytest.raises(TypeError, match="'cfg/f'"):
        io.save(tmp_path / "x.npz", {"cfg": {"f": object()}})
    with pytest.raises(TypeError, match="object"):
        io.save(tmp_path / "x.npz", {"a": np.array([None, 1], dtype=object)})
    with pytest.raises(ValueError, match="a/b"):
        io.save(tmp_path / "x.npz", {"a/b": 1})
    with pytest.raises(TypeError, match="dict"):
        io.save(tmp_path / "x.npz", [1, 2])
    assert not os.listdir(tmp_path)


def test_checkpoints_get_the_permissions_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        io.save(tmp_path / "a.npz", {"x": np.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o640


def test_to_json_is_strict_json_with_null_for_nan_and_inf():
    import json

    text = io.to_json({"iou": [float("nan"), 0.5], "loss": float("inf"), "n": 3})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"iou": [None, 0.5], "loss": None, "n": 3}


def test_write_atomically_keeps_the_old_file_and_no_temporary_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")

    def half(tmp):
        with open(tmp, "wb") as f:
            f.write(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.write_atomically(path, half)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pt"]
    io.write_text(path, "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["model.pt"]


def test_write_atomically_into_a_missing_folder_names_the_folder_not_a_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        io.write_text(tmp_path / "nowhere" / "m.json", "{}")
    assert info.value.filename == str(tmp_path / "nowhere")
