"""minisegnet.registry: the taught Function or its registered fast twin, and the switch between them."""

import os
import subprocess
import sys

import numpy as np
import pytest

import minisegnet as msn
import minisegnet.ops as F
from minisegnet import registry
from minisegnet.ops import activation, conv, loss, norm, pool
from minisegnet.tensor import Function


def test_every_registered_twin_subclasses_its_taught_op_and_lives_in_ops_fast():
    pairs = registry.registered()
    taught = {conv.Conv2d, conv.ConvTranspose2d, norm.BatchNorm, pool.MaxPool2d, activation.ReLU, loss.CrossEntropy}
    taught |= {activation.Softmax, activation.LogSoftmax}
    assert set(pairs) == taught
    for original, twin in pairs.items():
        assert issubclass(twin, original) and twin.__module__.startswith("minisegnet.ops.fast.")
        assert original.__module__.startswith("minisegnet.ops.") and ".fast." not in original.__module__


def test_creating_a_taught_op_creates_its_twin_unless_the_switch_is_on():
    assert type(conv.Conv2d(1, 0, 1)).__module__ == "minisegnet.ops.fast.conv"
    with msn.reference_kernels():
        assert type(conv.Conv2d(1, 0, 1)) is conv.Conv2d
        with msn.reference_kernels(False):
            assert type(conv.Conv2d(1, 0, 1)) is not conv.Conv2d
        assert type(conv.Conv2d(1, 0, 1)) is conv.Conv2d
    assert type(activation.Sigmoid()) is activation.Sigmoid  # no twin: itself


def test_the_switch_nests_reuses_and_restores_after_an_exception():
    switch = msn.reference_kernels()
    with switch:
        with switch:  # the same object, entered twice
            assert not registry.fast_paths()
        assert not registry.fast_paths()
    assert registry.fast_paths()
    with pytest.raises(RuntimeError, match="inside"):
        with msn.reference_kernels():
            raise RuntimeError("inside")
    assert registry.fast_paths()


def test_a_subclass_of_a_taught_op_is_left_alone():
    class MyReLU(activation.ReLU):
        pass

    assert type(MyReLU()) is MyReLU
    y = MyReLU()(np.array([-1.0, 2.0]))
    np.testing.assert_array_equal(y.data, [0.0, 2.0])


def test_register_refuses_a_class_that_is_not_a_subclass():
    class Other(Function):
        pass

    with pytest.raises(TypeError, match="must be a subclass of ReLU"):
        registry.register(activation.ReLU, Other)


def test_reference_kernels_is_one_switch_under_three_names():
    assert msn.reference_kernels is F.reference_kernels is registry.reference_kernels


@pytest.mark.parametrize("value,on", [("0", False), ("1", True), ("", False), (" 1 ", True)])
def test_reference_switch_from_environment(value, on):
    # MINISEGNET_REFERENCE=1, read at import, puts every op on its taught implementation.
    code = (
        "import minisegnet.ops.conv as c, minisegnet.registry as r; "
        "print(r.fast_paths(), type(c.Conv2d(1, 0, 1)) is c.Conv2d)"
    )
    env = {**os.environ, "MINISEGNET_REFERENCE": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(not on), str(on)]
