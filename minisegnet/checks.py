"""Deferred value checks: record a check's flag on the device now, read all of them at once later.

A check such as "the logits are finite" must read one boolean back from the GPU (a sync). Inside
``deferred_checks()`` (the training loop) ops/validate.py records the flag here instead, and
``flush()`` reads every pending flag in one host read.
"""

import threading

from .backend import get_array_module, read_host, to_numpy

# Per thread: the data thread's checks (train.py draws images on a second one) raise at once as ever.
_thread = threading.local()


def open_checks():
    """This thread's innermost open ``deferred_checks()`` block, or None (a check then reads its flag and raises)."""
    return getattr(_thread, "checks", None)


class CheckFailed(ValueError):
    """A deferred check that failed: ``step`` (the ``checks.step`` it was recorded at) and ``reason``."""

    def __init__(self, step, reason):
        super().__init__(reason if step is None else f"at step {step}: {reason}")
        self.step, self.reason = step, reason


class deferred_checks:
    """Inside the ``with`` block the value checks (ops/validate.py) record their flag on the device instead of
    reading it back; ``flush()`` reads all pending flags at once and raises the first failure.

        with deferred_checks() as checks:
            for step in ...:
                checks.step = step         # named in the error
                loss = loss_fn(logits, masks)   # its checks are recorded, not read: no GPU sync
                if step % 10 == 0:
                    checks.flush()         # one read; CheckFailed "at step 7: cross_entropy: logits contains nan ..."

    Leaving the block normally flushes too (after an exception: the pending checks are dropped).
    Blocks nest; a block may be entered again after it was left. (A class: a switch, not one of the ops.)
    """

    def __init__(self):
        self.step = None
        self.pending = []  # (step, bad: 0-d device bool, value: 0-d device array, message(value) -> str)
        self.before = []

    def __enter__(self):
        self.before.append(open_checks())
        _thread.checks = self
        return self

    def __exit__(self, *exc_info):
        _thread.checks = self.before.pop()
        if exc_info[0] is None:
            self.flush()
        else:
            self.pending = []

    def record(self, bad, value, message):
        """Keep a check for the next flush: it fails when ``bad`` holds, saying ``message(value)``."""
        self.pending.append((self.step, bad, value, message))

    def flush(self):
        """Read every pending flag (one host read) and raise ``CheckFailed`` for the first that holds."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        xp = get_array_module(*(bad for _, bad, _, _ in pending))
        flags = to_numpy(xp.stack([bad for _, bad, _, _ in pending]))
        for (step, _, value, message), failed in zip(pending, flags):
            if failed:
                raise CheckFailed(step, message(read_host(value)))
