"""host_reads.count_host_reads: every device-to-host read of a default training step, counted on the CPU."""

import numpy as np
import pytest

import minisegnet.ops as F
from minisegnet import backend, host_reads, metrics, recipe, train
from minisegnet import checks as checks_module
from minisegnet.data.loader import DataLoader
from minisegnet.recipe import TrainConfig
from minisegnet.train import Diverged, train_epoch

# A pass's only host reads: two per flush (the pending checks' flags; the losses with their logits-finite flags).
# A new one fails the tests below and names its call site: on the GPU each read waits for the device.
FLUSH_READS = {"train.train_epoch > train._flush": 2}


def one_step_setup(device):
    cfg = TrainConfig(n_train=8, n_val=8, size=16, base_channels=4, depth=2, batch_size=4, device=device).resolved()
    train_ds, _ = recipe.load_datasets(cfg)
    model = recipe.build_model(cfg, 3, train_ds.num_classes).to(device)
    opt, schedule = recipe.make_optimizer(cfg, model, 2)
    loss_fn = recipe.make_loss(cfg, None, train_ds.num_classes, device)
    meter = metrics.SegmentationMeter(train_ds.num_classes)
    batches = list(DataLoader(train_ds, batch_size=4))
    return model, batches, loss_fn, opt, schedule, meter


def test_a_default_training_step_reads_nothing_between_flushes(device):
    model, batches, loss_fn, opt, schedule, meter = one_step_setup(device)
    for steps, flushes in ((1, 1), (2, 1), (train.FLUSH_EVERY, 1), (train.FLUSH_EVERY + 1, 2)):
        with host_reads.count_host_reads() as reads:
            losses, _ = train_epoch(model, (batches * steps)[:steps], loss_fn, opt, schedule, meter, 0, device)
        assert reads.by_site() == {site: n * flushes for site, n in FLUSH_READS.items()}, (
            f"{steps} steps: {reads.sites}"
        )
        assert len(losses) == steps and all(isinstance(value, float) for value in losses)


def test_outside_the_loop_each_check_reads_its_flag_at_once(device):
    logits = backend.to_device(np.zeros((1, 3, 2, 2)), device)
    labels = backend.to_device(np.zeros((1, 2, 2), dtype=np.int64), device)
    with host_reads.count_host_reads() as reads:
        F.cross_entropy(logits, labels)
    assert reads.by_site() == {
        "validate.check_finite > validate.fail_if": 1,
        "validate.check_labels > validate.fail_if": 1,
    }


def test_count_host_reads_names_the_caller_and_nests(device):
    a = backend.to_device(np.arange(3.0), device)
    with host_reads.count_host_reads() as outer:
        backend.to_numpy(a)
        with host_reads.count_host_reads() as inner:
            assert backend.read_host(a.sum()) == 3.0
            assert float(backend.read_host(a[1])) == 1.0
    assert inner.sites == ["test_host_reads.test_count_host_reads_names_the_caller_and_nests"] * 2
    assert len(outer) == 3 and outer.by_site() == {inner.sites[0]: 3}
    backend.to_numpy(a)  # outside every block: nothing is counted
    assert len(outer) == 3


def test_a_meter_update_reads_nothing_and_compute_reads_three_arrays(device):
    # The meter counts with backend.bincount (a scatter-add on CuPy, which never reads max(x) back) and puts
    # ignored pixels in an extra bin instead of masking them out (a mask's size is a read on the GPU).
    rng = np.random.default_rng(0)
    meter = metrics.SegmentationMeter(3, ignore_index=255)
    masks = rng.integers(0, 3, (3, 2, 4, 5))
    masks[:, 0, 1] = 255
    with checks_module.deferred_checks() as checks:  # as train_epoch runs it
        for batch in masks:
            logits = backend.to_device(rng.standard_normal((2, 3, 4, 5)), device)
            with host_reads.count_host_reads() as reads:
                meter.update(logits, backend.to_device(batch, device))
            assert reads.sites == [] and len(checks.pending) == 2  # the label checks: recorded, not read
            checks.flush()
    with host_reads.count_host_reads() as reads:
        meter.update(logits, backend.to_device(masks[0], device))  # outside the loop: the checks read their flags
    assert reads.by_site() == {"metrics._cells > validate.fail_if": 2}
    with host_reads.count_host_reads() as reads:
        first = meter.compute()
        assert meter.compute() == first
    # The confusion matrix and the per-image scores (IoU, Dice): 3 arrays a call, however many batches were seen.
    assert reads.by_site() == {"metrics.compute": 2, "metrics.compute > metrics.over_images": 4}


def test_moving_host_arrays_is_not_a_read():
    with host_reads.count_host_reads() as reads:
        backend.to_device(np.zeros(2), "cpu")
    assert len(reads) == 0


def test_the_checks_still_raise_at_once_naming_the_bad_value(device):
    logits = backend.to_device(np.zeros((1, 3, 2, 2)), device)
    labels = backend.to_device(np.zeros((1, 2, 2), dtype=np.int64), device)
    with pytest.raises(ValueError, match="logits contains nan"):
        F.cross_entropy(logits * np.nan, labels)
    with pytest.raises(ValueError, match="holds label 7; labels must lie in \\[0, 3\\)"):
        F.cross_entropy(logits, labels + 7)


def spoil(batches, step, change):
    """``batches`` with the images or masks of the given (1-based) step changed by ``change(images, masks)``."""
    out = [(images.copy(), masks.copy()) for images, masks in batches]
    change(*out[step - 1])
    return out


def test_a_label_out_of_range_is_named_with_its_step(device):
    model, batches, loss_fn, opt, schedule, meter = one_step_setup(device)
    bad = spoil(batches * 3, 3, lambda images, masks: masks.__setitem__((0, 1, 2), 7))
    with pytest.raises(
        checks_module.CheckFailed, match=r"^at step 3: cross_entropy: target holds label 7; labels must lie"
    ):
        train_epoch(model, bad, loss_fn, opt, schedule, meter, 0, device)


def test_non_finite_logits_stop_training_at_their_step_though_later_steps_ran(device):
    model, batches, loss_fn, opt, schedule, meter = one_step_setup(device)
    bad = spoil(batches * 3, 3, lambda images, masks: images.__setitem__((0, 0, 0, 0), np.nan))
    with pytest.raises(
        Diverged, match=r"at step 3 \(learning rate .*the logits are not finite \(cross_entropy: logits"
    ):
        train_epoch(model, bad, loss_fn, opt, schedule, meter, 0, device)


def test_deferred_checks_raise_at_the_flush_naming_the_step(device):
    logits = backend.to_device(np.zeros((1, 3, 2, 2)), device)
    labels = backend.to_device(np.zeros((1, 2, 2), dtype=np.int64), device)
    with checks_module.deferred_checks() as checks:
        checks.step = 4
        F.cross_entropy(logits, labels)
        checks.step = 5
        F.cross_entropy(logits * np.nan, labels)  # recorded, not raised
        F.cross_entropy(logits, labels - 1)
        with pytest.raises(
            checks_module.CheckFailed, match=r"^at step 5: cross_entropy: logits contains nan"
        ) as caught:
            checks.flush()
        assert caught.value.step == 5 and isinstance(caught.value, ValueError)
        checks.flush()  # the failure was reported once: nothing is left pending
    assert checks_module.open_checks() is None


def test_leaving_a_deferred_block_flushes_it(device):
    labels = backend.to_device(np.full((1, 2, 2), -1, dtype=np.int64), device)
    with pytest.raises(checks_module.CheckFailed, match="holds label -1"):
        with checks_module.deferred_checks():
            F.cross_entropy(backend.to_device(np.zeros((1, 3, 2, 2)), device), labels)
    assert checks_module.open_checks() is None


def test_another_threads_checks_raise_at_once():
    from concurrent.futures import ThreadPoolExecutor

    nan = np.full((1, 3, 2, 2), np.nan)
    with checks_module.deferred_checks() as checks, ThreadPoolExecutor(1) as pool:
        job = pool.submit(F.cross_entropy, nan, np.zeros((1, 2, 2), dtype=np.int64))
        with pytest.raises(ValueError, match="logits contains nan"):
            job.result()
        assert checks.pending == []


def test_a_counter_or_a_check_block_entered_twice_counts_once_and_closes_cleanly():
    reads = host_reads.count_host_reads()
    with reads:
        with reads:
            backend.to_numpy(np.ones(1))
    assert len(reads) == 1
    checks = checks_module.deferred_checks()
    with checks:
        with checks:
            assert checks_module.open_checks() is checks
        assert checks_module.open_checks() is checks
    assert checks_module.open_checks() is None
