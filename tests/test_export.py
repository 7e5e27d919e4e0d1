"""minisegnet/export.py: every model goes to torch and back with the same outputs, and to ONNX.

tests/test_models.py checks the twins' outputs, statistics and gradients against ours; here the round trips.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from test_models import UNET_CASES

from minisegnet import nn
from minisegnet.models import FCN, UNet

from utils import rel_error, torch

FCN_CASES = ["32s", "16s", "8s"]


def unet(block, up, norm, skips, pad_input=False):
    nn.manual_seed(0)
    return UNet(3, 3, base_channels=4, depth=2, block=block, up=up, norm=norm, skips=skips, pad_input=pad_input)


def fcn(variant):
    nn.manual_seed(0)
    model = FCN(2, 3, variant, base_channels=4)
    for p in model.parameters():  # the zero-initialised skip scores would hide their own path: randomise them
        p.data = p.data + np.random.default_rng(1).uniform(-0.1, 0.1, p.shape).astype(np.float32)
    return model


def outputs(model, module, x, training):
    T = torch()
    model.train(training)
    module.train(training)
    with T.no_grad():
        theirs = module(T.from_numpy(x)).numpy()
    return model(x).data, theirs


def round_trip(model, shape):
    from minisegnet.export import from_torch, to_torch

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for training in (True, False):  # train first: the batch statistics then move the running ones on both sides
        module = to_torch(model)
        assert module.training == model.training
        ours, theirs = outputs(model, module, x, training)
        assert rel_error(ours, theirs) < 1e-5
        back = from_torch(module)
        assert list(back.state_dict()) == list(model.state_dict())
        for name, a in model.state_dict().items():
            # Weights go across as they are; running statistics are each side's own float32 sums of a pass.
            assert rel_error(back.state_dict()[name], a) < (1e-5 if "running" in name else 1e-6), name
        assert rel_error(back.eval()(x).data, model.eval()(x).data) < 1e-6


@pytest.mark.parametrize("block,up,norm,skips", UNET_CASES, ids=lambda v: str(v))
def test_every_unet_goes_to_torch_and_back(block, up, norm, skips):
    torch()
    round_trip(unet(block, up, norm, skips), (2, 3, 16, 12))


@pytest.mark.parametrize("variant", FCN_CASES)
def test_every_fcn_goes_to_torch_and_back(variant):
    torch()
    round_trip(fcn(variant), (2, 2, 64, 64))  # pool5 then holds 2x2x2 values per channel for batch norm


def test_padded_unet_goes_to_torch_with_the_same_padding_and_crop():
    torch()
    round_trip(unet("plain", "transpose", "batch", True, pad_input=True), (2, 3, 13, 10))


def test_from_torch_unwraps_a_wrapper_and_refuses_other_modules():
    T = torch()
    from minisegnet.export import from_torch, to_torch

    model = unet("plain", "bilinear", "batch", True)
    wrapped = T.nn.DataParallel(to_torch(model))  # DistributedDataParallel keeps the model in .module too
    assert list(from_torch(wrapped).state_dict()) == list(model.state_dict())
    with pytest.raises(TypeError, match="made by minisegnet.export.to_torch, got Conv2d"):
        from_torch(T.nn.Conv2d(1, 1, 1))


def test_to_torch_refuses_other_models():
    torch()
    from minisegnet.export import to_torch

    with pytest.raises(TypeError, match="UNet and FCN models, got Conv2d"):
        to_torch(nn.Conv2d(1, 1, 1))


# Every block, decoder, norm and skip setting once, and every FCN (each export takes a few seconds).
ONNX_UNETS = [
    ("plain", "transpose", "batch", True),
    ("residual", "bilinear", "batch", True),
    ("dense", "unpool", "batch", True),
] + UNET_CASES[-3:]
ONNX_CASES = [("unet",) + case for case in ONNX_UNETS] + [("fcn", v, None, None, None) for v in FCN_CASES]


@pytest.mark.slow
@pytest.mark.parametrize("kind,block,up,norm,skips", ONNX_CASES, ids=lambda v: str(v))
def test_every_model_goes_to_onnx_and_runs_the_same_in_onnxruntime(kind, block, up, norm, skips, tmp_path):
    torch()
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from minisegnet.export import to_onnx

    model = unet(block, up, norm, skips) if kind == "unet" else fcn(block)
    shape, other = ((1, 3, 16, 12), (3, 3, 8, 20)) if kind == "unet" else ((1, 2, 32, 64), (3, 2, 64, 32))
    path = to_onnx(model, tmp_path / "model.onnx", input_shape=shape)
    assert os.listdir(tmp_path) == ["model.onnx"], "one file: the weights inside it"
    x = np.random.default_rng(2).random(other, dtype=np.float32)  # batch size, height and width stay free
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert rel_error(got, model.eval()(x).data) < 1e-5


def test_without_torch_the_error_says_how_to_install_it(monkeypatch):
    from minisegnet import export

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[export\]"'):
        export.to_torch(unet("plain", "transpose", "batch", True))


def test_importing_the_package_and_export_does_not_import_torch():
    code = "import sys, minisegnet, minisegnet.export; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _checkpoint(path):
    import dataclasses

    import minisegnet as msn
    from minisegnet.recipe import TrainConfig, build_model

    cfg = TrainConfig(quick=True).resolved()
    model = build_model(cfg, 3, 3)
    msn.save(path, {"model": model.state_dict(), "config": dataclasses.asdict(cfg), "num_classes": 3})
    return model.eval(), cfg


def test_cli_export_writes_a_torch_file_that_loads_back(tmp_path, capsys):
    T = torch()
    from minisegnet.cli import main
    from minisegnet.export import load_torch

    model, cfg = _checkpoint(tmp_path / "run.npz")
    assert main(["export", str(tmp_path / "run.npz"), "--to", "torch"]) == 0
    assert f"wrote {tmp_path / 'run.pt'}" in capsys.readouterr().out
    module = load_torch(tmp_path / "run.pt")
    x = np.random.default_rng(0).random((1, 3, cfg.size, cfg.size), dtype=np.float32)
    with T.no_grad():
        assert rel_error(module(T.from_numpy(x)).numpy(), model(x).data) < 1e-5


@pytest.mark.slow
def test_cli_export_writes_one_onnx_file_that_takes_other_sizes_into_a_new_folder(tmp_path, capsys):
    torch()
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from minisegnet.cli import main

    model, cfg = _checkpoint(tmp_path / "run.npz")
    target = tmp_path / "new" / "folder" / "m.onnx"
    assert main(["export", str(tmp_path / "run.npz"), "--to", "onnx", "-o", str(target)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"wrote {target}")
    assert os.listdir(target.parent) == ["m.onnx"], "no m.onnx.data beside it, no temporary file"
    alone = target.rename(tmp_path / "alone.onnx")  # the file by itself carries the weights
    x = np.random.default_rng(0).random((2, 3, 2 * cfg.size, cfg.size + 16), dtype=np.float32)  # not 1x3x32x32
    got = ort.InferenceSession(str(alone), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    assert rel_error(got, model(x).data) < 1e-5


def test_check_target_refuses_a_folder_the_checkpoint_and_an_existing_file(tmp_path, monkeypatch):
    from minisegnet.export import check_target

    source = tmp_path / "run.npz"
    source.write_bytes(b"checkpoint")
    (tmp_path / "link.npz").symlink_to(source)
    with pytest.raises(IsADirectoryError, match=f"^-o {tmp_path} is a folder; name a file in it$"):
        check_target(tmp_path, source)
    for path in (source, tmp_path / "link.npz"):
        with pytest.raises(ValueError, match=f"^-o {path} is the checkpoint being exported"):
            check_target(path, source, force=True)
    (tmp_path / "m.pt").write_bytes(b"old")
    with pytest.raises(FileExistsError, match=f"^{tmp_path / 'm.pt'} exists; pass --force to replace it"):
        check_target(tmp_path / "m.pt", source)
    assert check_target(tmp_path / "m.pt", source, force=True) == tmp_path / "m.pt"
    assert check_target(tmp_path / "a" / "b" / "m.onnx", source).parent.is_dir()  # a missing folder is made
    with pytest.raises(NotADirectoryError, match=f"^-o {source / 'm.pt'}: {source} is a file, not a folder$"):
        check_target(source / "m.pt", source)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError) as info:
        check_target(tmp_path / "c" / "m.pt", source)
    assert info.value.filename == str(tmp_path / "c")


def test_cli_export_never_replaces_its_checkpoint_and_an_existing_file_only_with_force(tmp_path, capsys):
    torch()
    from minisegnet.cli import main
    from minisegnet.export import load_torch

    checkpoint = tmp_path / "run.npz"
    _checkpoint(checkpoint)
    before = checkpoint.read_bytes()
    for argv in (["-o", str(checkpoint)], ["-o", str(checkpoint), "--force"], ["-o", str(tmp_path)]):
        assert main(["export", str(checkpoint), "--to", "torch", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"error: -o {argv[1]} is ")
    (tmp_path / "run.pt").write_bytes(b"old")
    assert main(["export", str(checkpoint), "--to", "torch"]) == 2
    assert "--force" in capsys.readouterr().err and (tmp_path / "run.pt").read_bytes() == b"old"
    assert main(["export", str(checkpoint), "--to", "torch", "--force"]) == 0
    assert load_torch(tmp_path / "run.pt") is not None
    assert checkpoint.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["run.npz", "run.pt"]


def test_an_interrupted_export_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch, capsys):
    T = torch()
    from minisegnet.cli import main

    _checkpoint(tmp_path / "run.npz")
    (tmp_path / "run.pt").write_bytes(b"old")

    def cut(obj, f):
        with open(f, "wb") as out:
            out.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(T, "save", cut)
    assert main(["export", str(tmp_path / "run.npz"), "--to", "torch", "--force"]) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"
    assert (tmp_path / "run.pt").read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["run.npz", "run.pt"]


def test_cli_export_without_torch_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from minisegnet.cli import main

    _checkpoint(tmp_path / "run.npz")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["export", str(tmp_path / "run.npz"), "--to", "torch"]) == 2
    assert 'pip install -e ".[export]"' in capsys.readouterr().err
