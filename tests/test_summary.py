"""minisegnet/summary.py and `minisegnet summary`: the layer table, its counts, a model left as it was."""

import dataclasses

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import io, nn
from minisegnet.cli import main
from minisegnet.models import UNet, count_parameters
from minisegnet.module import Module
from minisegnet.recipe import TrainConfig, build_model


def rows_by_name(s):
    return {r.name: r for r in s.rows}


@pytest.mark.parametrize(
    "layer, shape, hand_count",
    [
        # 3 output channels x 5 x 5 positions, each a sum over 2 channels x 3 x 3 taps (padding taps included)
        (nn.Conv2d(2, 3, 3, padding=1), (1, 2, 5, 5), 3 * 5 * 5 * (2 * 3 * 3)),
        # stride 2 on 7x7 with padding 1: 4x4 outputs; a batch of 2
        (nn.Conv2d(2, 3, 3, stride=2, padding=1), (2, 2, 7, 7), 2 * 3 * 4 * 4 * (2 * 3 * 3)),
        # dilation 2 widens the window but keeps 3x3 taps: (9 - 4 - 1) + 1 = 5 outputs a side
        (nn.Conv2d(1, 1, 3, dilation=2), (1, 1, 9, 9), 1 * 1 * 5 * 5 * (1 * 3 * 3)),
        # every one of the 4 x 3 x 3 input values meets the 2 x 2 x 2 weights it is scattered through
        (nn.ConvTranspose2d(4, 2, 2, stride=2), (1, 4, 3, 3), 4 * 3 * 3 * (2 * 2 * 2)),
        # kernel 4, stride 2, padding 1 (FCN's upsampling): products landing in the cropped border still count
        (nn.ConvTranspose2d(1, 1, 4, stride=2, padding=1), (1, 1, 3, 3), 1 * 3 * 3 * (1 * 4 * 4)),
        (nn.BatchNorm2d(3), (2, 3, 4, 4), 2 * 3 * 4 * 4),  # one multiply-add per value in eval mode
        (nn.ReLU(), (1, 3, 4, 4), 0),
        (nn.MaxPool2d(2), (1, 3, 4, 4), 0),
    ],
)
def test_multiply_adds_of_each_layer_match_a_hand_count(layer, shape, hand_count):
    s = msn.summary(layer, shape)
    assert s.mult_adds == s.rows[0].mult_adds == hand_count


def test_a_unet_table_shows_every_layer_with_shapes_and_totals():
    net = UNet(3, 2, base_channels=4, depth=2)
    s = msn.summary(net, (3, 32, 32))
    rows = rows_by_name(s)
    assert s.input_shape == (1, 3, 32, 32)
    assert rows["UNet"].shape == (1, 2, 32, 32) and rows["bottleneck"].shape == (1, 16, 8, 8)
    assert rows["ups.0"].kind == "ConvTranspose2d" and rows["ups.0"].shape == (1, 8, 16, 16)
    assert s.params == count_parameters(net) == rows["UNet"].params
    # a container's count is its layers' sum, and the whole model's is every leaf's
    block = rows["encoder.1"]
    assert block.mult_adds == sum(rows[f"encoder.1.{n}"].mult_adds for n in ("conv1", "bn1", "conv2", "bn2"))
    assert s.mult_adds == rows["UNet"].mult_adds
    assert rows["encoder.0.conv1"].activation_bytes == 1 * 4 * 32 * 32 * 4  # float32 output
    text = str(s)
    assert "    encoder.1.conv2 (Conv2d)" in text and f"parameters: {count_parameters(net):,}" in text
    assert text == repr(s)


def test_the_model_is_left_as_it_was_even_after_an_error():
    net = UNet(3, 2, base_channels=4, depth=2)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    call = Module.__call__
    msn.summary(net, (2, 3, 16, 16))  # in training mode BatchNorm would update its running statistics
    assert all(np.array_equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training and net.encoder[0].bn1.training
    with pytest.raises(ValueError, match="input height 15 is not divisible by 4"):
        msn.summary(net, (1, 3, 15, 16))
    assert Module.__call__ is call and net.training


def test_pooling_indices_show_as_two_shapes():
    s = msn.summary(nn.MaxPool2d(2, return_indices=True), (1, 2, 4, 4))
    assert s.rows[0].shape == ((1, 2, 2, 2), (1, 2, 2, 2)) and "(1, 2, 2, 2); (1, 2, 2, 2)" in str(s)


@pytest.mark.parametrize("shape", [(3, 16), (1, 3, 0, 16), "1,3,16,16", (1.0, 3, 16, 16)])
def test_a_bad_input_shape_is_one_clear_error(shape):
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\) or \(C, H, W\)"):
        msn.summary(UNet(3, 2, 4, 1), shape)


def test_summary_command_from_model_flags_prints_a_unet_table(capsys):
    argv = ["summary", "--model", "unet", "--depth", "3", "--base-channels", "16", "--size", "64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    model = build_model(TrainConfig(depth=3, base_channels=16), 3, 6)
    assert out.splitlines()[1].startswith("UNet") and "(1, 6, 64, 64)" in out
    assert "  bottleneck (PlainBlock)         (1, 128, 8, 8)" in out
    assert f"parameters: {count_parameters(model):,}" in out


def test_summary_command_reads_a_checkpoint(tmp_path, capsys):
    cfg = TrainConfig(model="segnet", base_channels=4, depth=2, size=16)
    state = {"model": build_model(cfg, 3, 3).state_dict(), "config": dataclasses.asdict(cfg), "num_classes": 3}
    io.save(tmp_path / "c.npz", state)
    assert main(["summary", str(tmp_path / "c.npz"), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "(2, 3, 16, 16)" in out and "pool (MaxPool2d)" in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["--size", "30"],
            "--size 30 does not fit unet with --depth 3: expected a positive multiple of 8, e.g. --size 32",
        ),
        (["--depth", "40"], "--depth 40 is out of range: expected a whole number from 1 to 8"),
        (["--base-channels", "1000", "--depth", "8"], "--base-channels 1000 with --depth 8 makes a layer 256,000"),
        (["--model", "resnet"], "unknown model 'resnet'"),
        (["--batch-size", "0"], "--batch-size 0 is out of range"),
        (["c.npz", "--depth", "2"], "--depth describes a model to build, but c.npz holds its own"),
    ],
)
def test_summary_command_bad_input_is_one_line(argv, words, capsys):
    assert main(["summary", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
