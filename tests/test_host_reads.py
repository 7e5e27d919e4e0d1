"""backend.count_host_reads: every device-to-host read of a default training step, counted on the CPU."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import backend, metrics, recipe
from minisegnet.data.loader import DataLoader
from minisegnet.recipe import TrainConfig
from minisegnet.train import train_epoch

# The reads one default-recipe step makes today, by call site. A new one fails the test below and names itself:
# on the GPU each is a wait for the device, so add one only on purpose and update this table.
STEP_READS = {
    "metrics._kept": 2,  # the meter's label-range checks on prediction and target
    "train.train_epoch": 1,  # the loss value, for divergence detection and the history
    "validate.check_finite": 1,  # cross-entropy: the logits are finite
    "validate.check_labels": 2,  # cross-entropy and soft Dice: the labels lie in [0, C)
    "validate.check_unit_interval": 1,  # soft Dice: the probabilities lie in [0, 1]
}


def one_step_setup(device):
    cfg = TrainConfig(n_train=8, n_val=8, size=16, base_channels=4, depth=2, batch_size=4, device=device).resolved()
    train_ds, _ = recipe.load_datasets(cfg)
    model = recipe.build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = recipe.make_optimizer(cfg, model, 2)
    loss_fn = recipe.make_loss(cfg, None, train_ds.num_classes, device)
    meter = metrics.SegmentationMeter(train_ds.num_classes)
    batches = list(DataLoader(train_ds, batch_size=4))
    return model, batches, loss_fn, opt, schedule, meter


def test_a_default_training_step_reads_the_host_a_known_number_of_times(device):
    model, batches, loss_fn, opt, schedule, meter = one_step_setup(device)
    with backend.count_host_reads() as reads:
        train_epoch(model, batches[:1], loss_fn, opt, schedule, meter, 0, device)
    assert reads.by_site() == STEP_READS, f"host reads changed: {reads.sites}"
    assert len(reads) == sum(STEP_READS.values())


def test_reads_scale_with_the_steps(device):
    model, batches, loss_fn, opt, schedule, meter = one_step_setup(device)
    with backend.count_host_reads() as reads:
        train_epoch(model, batches[:2], loss_fn, opt, schedule, meter, 0, device)
    assert len(reads) == 2 * sum(STEP_READS.values()), reads.by_site()


def test_count_host_reads_names_the_caller_and_nests(device):
    a = backend.to_device(np.arange(3.0), device)
    with backend.count_host_reads() as outer:
        backend.to_numpy(a)
        with backend.count_host_reads() as inner:
            assert backend.read_host(a.sum()) == 3.0
            assert backend.scalar(a[1]) == 1.0
    assert inner.sites == ["test_host_reads.test_count_host_reads_names_the_caller_and_nests"] * 2
    assert len(outer) == 3 and outer.by_site() == {inner.sites[0]: 3}
    backend.to_numpy(a)  # outside every block: nothing is counted
    assert len(outer) == 3


def test_moving_host_arrays_is_not_a_read():
    with backend.count_host_reads() as reads:
        backend.to_device(np.zeros(2), "cpu")
    assert len(reads) == 0


def test_the_checks_still_raise_at_once_naming_the_bad_value(device):
    logits = backend.to_device(np.zeros((1, 3, 2, 2)), device)
    labels = backend.to_device(np.zeros((1, 2, 2), dtype=np.int64), device)
    with pytest.raises(ValueError, match="logits contains nan"):
        F.cross_entropy(logits * np.nan, labels)
    with pytest.raises(ValueError, match="holds label 7; labels must lie in \\[0, 3\\)"):
        F.cross_entropy(logits, labels + 7)
