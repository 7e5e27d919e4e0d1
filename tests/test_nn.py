"""minisegnet.nn (module.py and layers.py): registration, state_dict in PyTorch's layout, init, layers against torch."""

import math

import numpy as np
import pytest

import minisegnet as msn
from minisegnet import nn
from minisegnet.backend import to_numpy

from utils import rand, rel_error, torch


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Dropout2d(0.5)])
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.scale = nn.Parameter(np.ones(1, dtype=np.float32))
        self.note = "not registered"

    def forward(self, x):
        x = self.blocks[1](self.blocks[0](self.features(x)))
        return self.up(x) * self.scale


def torch_net(T):
    tn = T.nn
    net = tn.Module()
    net.features = tn.Sequential(tn.Conv2d(3, 4, 3, padding=1, bias=False), tn.BatchNorm2d(4), tn.ReLU())
    net.blocks = tn.ModuleList([tn.Conv2d(4, 4, 1), tn.Dropout2d(0.5)])
    net.up = tn.ConvTranspose2d(4, 2, 2, stride=2)
    net.scale = tn.Parameter(T.ones(1))
    return net


def test_registration_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.1.weight", "features.1.bias", "blocks.0.weight"] + [
        "blocks.0.bias",
        "up.weight",
        "up.bias",
    ]
    assert [n for n, _ in net.named_buffers()] == [
        "features.1.running_mean",
        "features.1.running_var",
        "features.1.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["features", "blocks", "up"]
    assert len(list(net.modules())) == 9 and net.note == "not registered"
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    with pytest.raises(AttributeError, match="missing"):
        net.missing  # noqa: B018


def test_state_dict_keys_shapes_and_dtypes_equal_torch():
    T = torch()
    ours, theirs = Net().state_dict(), torch_net(T).state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        assert ours[k].shape == tuple(theirs[k].shape), k
        assert ours[k].dtype == theirs[k].numpy().dtype, k
    assert ours["features.1.num_batches_tracked"].dtype == np.int64


def test_load_state_dict_into_torch_gives_the_same_output():
    T = torch()
    net, tnet = Net(), torch_net(T)
    tnet.load_state_dict({k: T.from_numpy(v) for k, v in net.state_dict().items()})
    tnet.eval()
    net.eval()
    x = rand(2, 3, 5, 6, dtype=np.float32, requires_grad=False)
    f = tnet.features(T.from_numpy(x.numpy()))
    expect = tnet.up(tnet.blocks[0](f)) * tnet.scale
    assert rel_error(net(x), expect.detach().numpy()) < 1e-5


def test_load_state_dict_errors_name_the_keys_and_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["up.bias"]
    sd["extra.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['up.bias'\].*unexpected keys \['extra.weight'\]"):
        net.load_state_dict(sd)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["up.bias"] and unexpected == ["extra.weight"]
    sd = net.state_dict()
    sd["up.weight"] = np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match=r"up.weight: checkpoint \(4, 2, 3, 3\) vs model \(4, 2, 2, 2\)"):
        net.load_state_dict(sd)


def test_load_state_dict_copies_in_place(device):
    a, b = Net(), Net()
    b.to(device)
    weight = b.up.weight
    b.load_state_dict(a.state_dict())
    assert b.up.weight is weight and b.up.weight.device == device
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_train_eval_zero_grad_and_to(device):
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert net.blocks[1].training
    net.to(device)
    assert all(p.device == device for p in net.parameters())
    assert all(msn.backend.device_of(b) == device for b in net.buffers())
    net.to(dtype=np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert net.features[1].num_batches_tracked.dtype == np.int64
    x = rand(2, 3, 4, 4, device=device, requires_grad=False)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert int(to_numpy(net.features[1].num_batches_tracked)) == 1
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr_reads_like_torch():
    text = repr(Net())
    assert "(features): Sequential(" in text
    assert "(0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)" in text
    assert "(1): BatchNorm2d(4, eps=1e-05, momentum=0.1)" in text and "(1): Dropout2d(p=0.5)" in text


def test_manual_seed_and_rng_make_init_reproducible():
    nn.manual_seed(3)
    a = nn.Conv2d(2, 3, 3)
    nn.manual_seed(3)
    b = nn.Conv2d(2, 3, 3)
    c = nn.Conv2d(2, 3, 3, rng=np.random.default_rng(5))
    d = nn.Conv2d(2, 3, 3, rng=np.random.default_rng(5))
    assert np.array_equal(a.weight.data, b.weight.data) and np.array_equal(c.bias.data, d.bias.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    assert a.weight.dtype == np.float32


@pytest.mark.parametrize("kind", ["conv", "transpose"])
def test_default_init_matches_torch_bounds(kind):
    T = torch()
    T.manual_seed(0)
    nn.manual_seed(0)
    C, OC, K = 6, 64, 3  # C != OC, so the transposed conv's fan_in convention shows
    ours = nn.Conv2d(C, OC, K) if kind == "conv" else nn.ConvTranspose2d(C, OC, K)
    theirs = T.nn.Conv2d(C, OC, K) if kind == "conv" else T.nn.ConvTranspose2d(C, OC, K)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    # PyTorch's fan_in is weight.shape[1] * KH * KW for both (OC*K*K for a transposed conv).
    bound = 1 / math.sqrt(ours.weight.shape[1] * K * K)
    for w, tw in [(ours.weight.data, theirs.weight), (ours.bias.data, theirs.bias)]:
        tw = tw.detach().numpy()
        assert np.abs(w).max() <= bound and np.abs(tw).max() <= bound
        assert np.abs(w).max() > 0.8 * bound and np.abs(tw).max() > 0.8 * bound
    big = nn.Conv2d(64, 64, 3, rng=np.random.default_rng(0)).weight.data
    assert abs(big.std() - 1 / math.sqrt(3 * 64 * 9)) < 0.02 / math.sqrt(64 * 9)  # U(-b, b) has std b/sqrt(3)
    assert abs(big.mean()) < 0.01 / math.sqrt(64 * 9)


def test_batchnorm_init_and_training_match_torch(device):
    T = torch()
    bn, tbn = nn.BatchNorm2d(3, momentum=0.2).to(device), T.nn.BatchNorm2d(3, momentum=0.2)
    assert all(np.array_equal(v, tbn.state_dict()[k].numpy()) for k, v in bn.state_dict().items())
    x = rand(4, 3, 5, 5, device=device, dtype=np.float32, requires_grad=False)
    for _ in range(2):
        y, ty = bn(x), tbn(T.from_numpy(x.numpy()))
        assert rel_error(y, ty.detach().numpy()) < 1e-5
    for k, v in tbn.state_dict().items():
        assert rel_error(bn.state_dict()[k], v.numpy()) < 1e-6, k
    bn.eval()
    tbn.eval()
    assert rel_error(bn(x), tbn(T.from_numpy(x.numpy())).detach().numpy()) < 1e-5
    assert int(bn.state_dict()["num_batches_tracked"]) == 2
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) expects \(N, 3, H, W\)"):
        bn(rand(2, 4, 3, 3, device=device, dtype=np.float32))


LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1), lambda t: t.Conv2d(3, 5, 3, 2, 1), (9, 9)),
    "conv_dil": (lambda: nn.Conv2d(3, 4, (3, 2), padding=(2, 1), dilation=2), None, (8, 7)),
    "transpose": (
        lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
        lambda t: t.ConvTranspose2d(3, 4, 3, 2, 1, 1),
        (5, 6),
    ),
    "maxpool": (lambda: nn.MaxPool2d(2), lambda t: t.MaxPool2d(2), (6, 8)),
    "upsample_nearest": (lambda: nn.Upsample(2), lambda t: t.Upsample(scale_factor=2), (3, 4)),
    "upsample_bilinear": (
        lambda: nn.Upsample(2, "bilinear"),
        lambda t: t.Upsample(scale_factor=2, mode="bilinear"),
        (3, 4),
    ),
    "relu": (lambda: nn.ReLU(), lambda t: t.ReLU(), (3, 3)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layers_match_torch(name, device):
    T = torch()
    make, make_torch, (H, W) = LAYERS[name]
    layer = make().to(device)
    x = rand(2, 3, H, W, device=device, dtype=np.float32, requires_grad=False)
    y = layer(x)
    if make_torch is None:  # compare with torch's functional form instead
        tw = T.from_numpy(layer.state_dict()["weight"])
        ty = T.nn.functional.conv2d(T.from_numpy(x.numpy()), tw, T.from_numpy(layer.state_dict()["bias"]), 1, (2, 1), 2)
    else:
        tlayer = make_torch(T.nn)
        tlayer.load_state_dict({k: T.from_numpy(v) for k, v in layer.state_dict().items()})
        ty = tlayer(T.from_numpy(x.numpy()))
    assert y.shape == tuple(ty.shape)
    assert rel_error(y, ty.detach().numpy()) < 1e-5


def test_maxpool_indices_feed_maxunpool(device):
    x = rand(1, 2, 4, 4, device=device, requires_grad=False)
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    z = nn.MaxUnpool2d(2)(y, idx)
    assert z.shape == (1, 2, 4, 4) and float(to_numpy(z.data).sum()) == pytest.approx(float(to_numpy(y.data).sum()))


def test_dropout2d_zeroes_whole_channels_in_training_only(device):
    x = msn.tensor(np.ones((4, 8, 3, 3), dtype=np.float32), device=device)
    layer = nn.Dropout2d(0.5)
    y = to_numpy(layer(x).data)
    per_channel = y.reshape(32, 9)
    assert set(np.unique(per_channel)) <= {0.0, 2.0} and (per_channel.min(1) == per_channel.max(1)).all()
    assert np.array_equal(to_numpy(layer.eval()(x).data), np.ones((4, 8, 3, 3)))
    with pytest.raises(ValueError, match="1.5"):
        nn.Dropout2d(1.5)


def test_bad_layer_arguments_raise():
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, (3, 3, 3))
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(0, 4, 3)
    with pytest.raises(ValueError, match="'nearest' or 'bilinear'"):
        nn.Upsample(2, "cubic")
