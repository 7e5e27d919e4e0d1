"""minisegnet/models.py and blocks.py: torch twins give the same outputs, sizes are checked, a UNet learns.

Each twin (``minisegnet.export.to_torch``) is the same architecture written with torch.nn, with the same attribute
names, so our state_dict loads into it with strict=True; then outputs, running statistics and gradients must agree.
"""

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet import nn, optim
from minisegnet.backend import to_device, to_numpy
from minisegnet.models import FCN, UNet, bilinear_kernel, count_parameters

from utils import rel_error, torch


def to_torch(model):
    torch()  # skips without PyTorch
    from minisegnet.export import to_torch

    return to_torch(model)


def compare_with_twin(model, device, shape, seed=0):
    """Our weights in the torch twin (export.to_torch); outputs, running stats and gradients match in train and eval."""
    T = torch()
    twin = to_torch(model)
    threads = T.get_num_threads()
    T.set_num_threads(1)  # tiny tensors: extra threads only spin on a shared 2-core machine
    try:
        _compare(T, model, twin, device, shape, seed)
    finally:
        T.set_num_threads(threads)


def _compare(T, model, twin, device, shape, seed):
    assert list(model.state_dict()) == list(twin.state_dict())  # same names, same order
    model.to(device)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    for training in (True, False):
        model.train(training)
        twin.train(training)
        model.zero_grad()
        twin.zero_grad()
        y = model(msn.tensor(x, device=device))
        ty = twin(T.from_numpy(x))
        assert y.shape == tuple(ty.shape) == (shape[0], model.num_classes) + shape[2:]
        assert rel_error(y, ty.detach().numpy()) < 1e-4
        r = rng.standard_normal(y.shape).astype(np.float32)
        (y * msn.tensor(r, device=device)).sum().backward()
        (ty * T.from_numpy(r)).sum().backward()
        tparams = dict(twin.named_parameters())
        for name, p in model.named_parameters():
            assert rel_error(p.grad, tparams[name].grad.numpy()) < 1e-4, name
        ours_sd = model.state_dict()
        for k, v in twin.state_dict().items():
            assert rel_error(ours_sd[k], v.numpy()) < 1e-5, k


UNET_CASES = [
    (b, u, "batch", True) for b in ("plain", "residual", "dense") for u in ("transpose", "bilinear", "unpool")
]
UNET_CASES += [
    ("plain", "transpose", None, True),
    ("residual", "unpool", None, False),
    ("plain", "unpool", "batch", False),
]


@pytest.mark.parametrize("block,up,norm,skips", UNET_CASES, ids=lambda v: str(v))
def test_unet_matches_torch_twin(block, up, norm, skips, device):
    nn.manual_seed(0)
    model = UNet(3, 3, base_channels=4, depth=2, block=block, up=up, norm=norm, skips=skips)
    compare_with_twin(model, device, (2, 3, 16, 12))


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_fcn_matches_torch_twin(variant, device):
    nn.manual_seed(0)
    model = FCN(2, 3, variant, base_channels=4)
    for p in model.parameters():  # the zero-initialised skip scores would hide their own path: randomise them
        p.data = p.data + np.random.default_rng(1).uniform(-0.1, 0.1, p.shape).astype(np.float32)
    compare_with_twin(model, device, (2, 2, 32, 64))


def test_fcn_starts_as_the_coarser_net_and_upsamples_bilinearly():
    k = bilinear_kernel(2)
    assert k.shape == (2, 2, 4, 4) and np.allclose(k[0, 0, 1], [0.1875, 0.5625, 0.5625, 0.1875]) and k[0, 1].max() == 0
    nn.manual_seed(0)
    fcn8 = FCN(3, 2, "8s", base_channels=4)
    assert not fcn8.score_pool3.weight.data.any() and not fcn8.score_pool4.bias.data.any()
    # A transposed conv with the bilinear kernel equals bilinear interpolation away from the border.
    x = msn.tensor(np.random.default_rng(0).random((1, 2, 6, 6)).astype(np.float32))
    up = to_numpy(fcn8.upscore2(x).data)
    ref = to_numpy(F.upsample(x, 2, "bilinear").data)
    assert np.allclose(up[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-6)
    sizes = [count_parameters(FCN(3, 2, v)) for v in ("32s", "16s", "8s")]
    assert sizes[0] < sizes[1] < sizes[2] < 1_000_000


def test_bad_sizes_name_the_size_the_depth_and_the_nearest_valid_sizes():
    model = UNet(3, 2, base_channels=4, depth=3)
    with pytest.raises(ValueError, match=r"height 20 is not divisible by 8 \(2\*\*3 for depth=3\).*sizes: 24 or 16"):
        model(np.zeros((1, 3, 20, 16), np.float32))
    with pytest.raises(ValueError, match=r"width 5 .* 8; or pass pad_input=True"):
        model(np.zeros((1, 3, 16, 5), np.float32))
    with pytest.raises(ValueError, match=r"expects 3 input channels, got 1"):
        model(np.zeros((1, 1, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(np.zeros((3, 16, 16), np.float32))
    with pytest.raises(ValueError, match=r"width 40 is not divisible by 32.*64 or 32"):
        FCN(3, 2, base_channels=4)(np.zeros((2, 3, 32, 40), np.float32))
    with pytest.raises(ValueError, match="block"):
        UNet(block="wide")
    with pytest.raises(ValueError, match="up"):
        UNet(up="cubic")
    with pytest.raises(ValueError, match="variant"):
        FCN(variant="4s")


def test_pad_input_pads_and_crops_back(device):
    nn.manual_seed(0)
    model = UNet(3, 2, base_channels=4, depth=2, pad_input=True).to(device).eval()
    x = msn.tensor(np.random.default_rng(0).random((1, 3, 13, 18)).astype(np.float32), device=device)
    y = model(x)
    assert y.shape == (1, 2, 13, 18)
    model.pad_input = False
    padded = model(F.pad(x, ((0, 0), (0, 0), (1, 2), (1, 1))))  # 13 -> 16, 18 -> 20 split around the image
    assert rel_error(y, padded[:, :, 1:14, 1:19]) < 1e-6


def test_checkpoint_round_trip_restores_the_outputs(tmp_path):
    nn.manual_seed(0)
    a = UNet(3, 2, base_channels=4, depth=2, block="residual").eval()
    nn.manual_seed(1)
    b = UNet(3, 2, base_channels=4, depth=2, block="residual").eval()
    x = np.random.default_rng(0).random((1, 3, 8, 8)).astype(np.float32)
    msn.save(tmp_path / "m.npz", {"model": a.state_dict()})
    b.load_state_dict(msn.load(tmp_path / "m.npz")["model"])
    assert np.array_equal(a(x).data, b(x).data)


def test_tiny_unet_overfits_one_batch(device):
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 16, 16)).astype(np.float32)
    target = np.zeros((2, 16, 16), dtype=np.int64)
    target[0, 4:12, 3:9] = 1
    target[1, 2:7, 8:15] = 2
    x[:, 0] += target  # the classes are visible in the image
    model = UNet(3, 3, base_channels=4, depth=2).to(device)
    opt = optim.Adam(model.parameters(), lr=0.02)
    xs, ts = to_device(x, device), to_device(target, device)
    losses = []
    for _ in range(30):
        logits = model(xs)
        loss = F.cross_entropy(logits, ts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    assert (to_numpy(logits.data).argmax(1) == target).mean() > 0.98  # batch statistics, as trained


def test_he_init_draws_conv_weights_with_variance_2_over_fan_out():
    from minisegnet import layers, models
    from minisegnet.nn import manual_seed

    manual_seed(0)
    model = models.he_init(UNet(3, 6, base_channels=8, depth=2))
    convs = [m for m in model.modules() if isinstance(m, (layers.Conv2d, layers.ConvTranspose2d))]
    assert any(isinstance(m, layers.ConvTranspose2d) for m in convs)
    for m in convs:
        w = m.weight.data
        OC = w.shape[0] if isinstance(m, layers.Conv2d) else w.shape[1]
        if w.size >= 1000:  # enough draws for the sample variance to be close
            assert abs(w.var() / (2.0 / (OC * w.shape[2] * w.shape[3])) - 1) < 0.15
        assert m.bias is None or not m.bias.data.any()
    manual_seed(0)
    again = models.he_init(UNet(3, 6, base_channels=8, depth=2))
    np.testing.assert_array_equal(again.head.weight.data, model.head.weight.data)  # seeded by manual_seed
    manual_seed(0)
    plain = UNet(3, 6, base_channels=8, depth=2)
    head = plain.head.weight.data.copy()
    kept = models.he_init(plain, keep=[plain.head])
    np.testing.assert_array_equal(kept.head.weight.data, head)  # kept as constructed
    assert np.abs(head).max() <= 1 / np.sqrt(8)  # PyTorch's default bound, 1 / sqrt(fan_in), not He's spread
    for a, b in zip(model.modules(), kept.modules()):  # the rest as before: the head is the last layer drawn
        if isinstance(a, (layers.Conv2d, layers.ConvTranspose2d)) and a is not model.head:
            np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_he_init_fan_out_against_torch_for_conv_and_transposed_conv():
    # He's fan_out is OC*KH*KW for both layers. torch computes it from weight.shape[0]: OC for a Conv2d's
    # (OC, C, KH, KW), but C for a ConvTranspose2d's (C, OC, KH, KW), where OC*KH*KW is torch's fan_in.
    T = torch()
    from minisegnet import layers, models
    from minisegnet.nn import manual_seed

    manual_seed(0)
    conv = models.he_init(layers.Conv2d(64, 128, 3))
    up = models.he_init(layers.ConvTranspose2d(128, 32, 3))
    assert up.weight.shape == (128, 32, 3, 3)
    fan_in, fan_out = T.nn.init._calculate_fan_in_and_fan_out(T.empty(*up.weight.shape))
    assert (fan_in, fan_out) == (32 * 9, 128 * 9)  # as torch counts them for the transposed conv's weight
    T.manual_seed(0)
    cases = [
        (conv, T.nn.init.kaiming_normal_(T.empty(128, 64, 3, 3), mode="fan_out", nonlinearity="relu")),
        (up, T.nn.init.kaiming_normal_(T.empty(128, 32, 3, 3), mode="fan_in", nonlinearity="relu")),
    ]
    for layer, twin in cases:
        ours = layer.weight.data.std()
        assert abs(ours / np.sqrt(2 / (layer.out_channels * 9)) - 1) < 0.02  # 2 / (OC*KH*KW), 37k+ draws
        assert abs(ours / twin.std().item() - 1) < 0.03
    torch_fan_out = T.nn.init.kaiming_normal_(T.empty(128, 32, 3, 3), mode="fan_out", nonlinearity="relu")
    assert abs(up.weight.data.std() / torch_fan_out.std().item() - 2) < 0.06  # sqrt(C / OC) = 2 times torch's


def test_zero_init_residual_starts_every_residual_branch_at_zero():
    from minisegnet.blocks import ResidualBlock

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    model = UNet(3, 4, base_channels=4, depth=2, block="residual", zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 5 and all(np.all(b.bn2.weight.data == 0) for b in blocks)
    block = blocks[0]
    with msn.no_grad():
        # The branch contributes exactly 0 (gamma 0, beta 0), so the block is relu(shortcut(x)).
        np.testing.assert_array_equal(block(x).numpy(), F.relu(block.shortcut(x)).numpy())
    default = UNet(3, 4, base_channels=4, depth=2, block="residual")
    assert all(np.all(m.bn2.weight.data == 1) for m in default.modules() if isinstance(m, ResidualBlock))
    plain = UNet(3, 4, base_channels=4, depth=2, block="plain", zero_init_residual=True)  # ignored by other blocks
    assert all(np.all(m.bn2.weight.data == 1) for m in plain.modules() if hasattr(m, "bn2"))
    # Training moves gamma off zero: the branch grows in.
    opt = optim.Adam(model.parameters(), lr=1e-2)
    loss = F.cross_entropy(model(x), np.zeros((2, 16, 16), dtype=np.int64))
    loss.backward()
    opt.step()
    assert np.any(block.bn2.weight.data != 0)


def test_one_rule_gives_the_side_multiple_and_the_nearest_valid_sides():
    from minisegnet.models import nearest_sides, side_multiple

    assert [side_multiple("unet", 3), side_multiple("segnet", 2), side_multiple("fcn8s", 3)] == [8, 4, 32]
    assert [nearest_sides(20, 8), nearest_sides(5, 8), nearest_sides(16, 8), nearest_sides(33, 32)] == [
        "24 or 16",
        "8",
        "16",
        "64 or 32",
    ]
