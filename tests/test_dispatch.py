"""ops/dispatch.py: override swaps an op everywhere the library calls it."""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet import layers, models, nn
from minisegnet.ops import loss as loss_module
from minisegnet.recipe import TrainConfig, make_loss

from utils import rand, rel_error


def counting(name, calls):
    """A stand-in for op ``name`` that records each call and then runs the library's own op."""
    original = getattr(F, name)

    def fn(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    return fn


def test_override_reaches_the_layers_and_restores_on_exit(device):
    conv = nn.Conv2d(2, 3, 3, padding=1).to(device)
    x = rand(1, 2, 5, 5, device=device, dtype=np.float32)
    original, calls = F.conv2d, []
    with F.override(conv2d=counting("conv2d", calls)) as lib:
        y = conv(x)
        assert F.conv2d is not original and lib.conv2d is original
    assert calls == ["conv2d"] and F.conv2d is original and layers.F.conv2d is original
    assert rel_error(y, conv(x)) == 0 and calls == ["conv2d"]  # the library's conv again


def test_override_restores_after_an_exception():
    original = F.max_pool2d

    def broken(*args, **kwargs):
        raise RuntimeError("student bug")

    with pytest.raises(RuntimeError, match="student bug"):
        with F.override(max_pool2d=broken):
            nn.MaxPool2d(2)(rand(1, 1, 4, 4, dtype=np.float32))
    assert F.max_pool2d is original and nn.MaxPool2d(2)(rand(1, 1, 4, 4, dtype=np.float32)).shape == (1, 1, 2, 2)


def test_a_model_forward_calls_every_overridden_op(device):
    msn.nn.manual_seed(0)
    model = models.UNet(1, 2, base_channels=2, depth=1).to(device)
    x = rand(1, 1, 8, 8, device=device, dtype=np.float32, requires_grad=False)
    expected = model(x).data
    calls = []
    fns = {name: counting(name, calls) for name in ("conv2d", "conv_transpose2d", "max_pool2d")}
    with msn.ops.override(**fns):
        y = model(x)
    assert {"conv2d", "conv_transpose2d", "max_pool2d"} == set(calls) and calls.count("conv2d") >= 5
    assert rel_error(y, expected) == 0


def test_the_recipe_loss_and_dice_ce_loss_call_the_overridden_losses():
    rng = np.random.default_rng(0)
    logits, masks = msn.tensor(rng.standard_normal((2, 3, 4, 4))), rng.integers(0, 3, (2, 4, 4))
    calls = []
    with F.override(cross_entropy=counting("cross_entropy", calls), soft_dice_loss=counting("soft_dice_loss", calls)):
        make_loss(TrainConfig(loss="ce+dice"), masks, 3, "cpu")(logits, masks)
        assert calls == ["cross_entropy", "soft_dice_loss"]
        F.dice_ce_loss(logits, masks)  # loss.py calls them by its own module-level names: swapped there too
        assert len(calls) == 4 and loss_module.cross_entropy is F.cross_entropy
    assert loss_module.cross_entropy is not None and "counting" not in F.cross_entropy.__qualname__


def test_nested_overrides_unwind_in_order():
    original, outer, inner = F.conv2d, counting("conv2d", []), counting("conv2d", [])
    with F.override(conv2d=outer):
        with F.override(conv2d=inner) as lib:
            assert layers.F.conv2d is inner and lib.conv2d is outer
        assert F.conv2d is outer
    assert F.conv2d is original


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"conv3d": print}, ValueError, "'conv3d' is not a public op of minisegnet.ops"),
        ({"_check": print}, ValueError, "'_check' is not a public op"),
        ({"override": print}, ValueError, "'override' is not a public op"),
        ({"conv2d": 3}, TypeError, "conv2d= must be a function, got int"),
    ],
)
def test_bad_overrides_raise_one_line_and_change_nothing(kwargs, error, match):
    original = F.conv2d
    with pytest.raises(error, match=match) as info:
        with F.override(**kwargs):
            pass
    assert "\n" not in str(info.value) and F.conv2d is original


def test_reference_kernels_train_a_model_to_the_same_numbers(device):
    # The whole switch at once: a U-Net's loss and gradients, fast paths against reference paths (float32).
    msn.nn.manual_seed(0)
    model = models.UNet(2, 3, base_channels=4, depth=2).to(device)
    x = rand(2, 2, 16, 16, device=device, dtype=np.float32, requires_grad=False)
    masks = msn.backend.to_device(np.random.default_rng(0).integers(0, 3, (2, 16, 16)), device)
    runs = []
    for reference in (False, True):
        with msn.reference_kernels(reference):
            model.zero_grad()
            loss = F.dice_ce_loss(model(x), masks)
            loss.backward()
            runs.append([loss.data] + [p.grad.copy() for p in model.parameters()])
    assert all(rel_error(a, b) <= 1e-5 for a, b in zip(*runs))


def test_override_nests_in_itself_and_is_reusable():
    def mine(x):
        return x

    original = F.relu
    swap = F.override(relu=mine)
    with swap:
        with swap:
            assert F.relu is mine
        assert F.relu is mine  # the inner block swapped nothing, so it restores nothing
    assert F.relu is original
    with swap:
        assert F.relu is mine
    assert F.relu is original
