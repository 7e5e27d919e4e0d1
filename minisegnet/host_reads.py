"""Counting device-to-host reads: each one is a GPU sync, so a training step should make few.

Every read of the library goes through ``backend.to_numpy`` (``read_host`` too), which calls
``note()``; inside ``count_host_reads()`` blocks each read is recorded with its call site. The
count is kept on the CPU as well, where nothing waits: tests check the count there.
"""

import collections
import os
import sys
from pathlib import Path

_counters = []  # the open count_host_reads() blocks, innermost last
_PACKAGE = str(Path(__file__).parent) + os.sep
_HERE = tuple(str(Path(__file__).with_name(name)) for name in ("host_reads.py", "backend.py", "checks.py"))


def note():
    """Record one host read in every open ``count_host_reads()`` block, named by the code that asked."""
    if not _counters:
        return
    frame = sys._getframe(1)
    while frame.f_code.co_filename in _HERE:  # name the code that asked, not the read helpers or the checks
        frame = frame.f_back
    names = [f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_name}"]
    caller = frame.f_back
    if caller is not None and caller.f_code.co_filename.startswith(_PACKAGE):  # and its caller in the library
        names.insert(0, f"{Path(caller.f_code.co_filename).stem}.{caller.f_code.co_name}")
    site = " > ".join(names)
    for counter in dict.fromkeys(_counters):  # a block entered twice (nested in itself) counts a read once
        counter.sites.append(site)


class count_host_reads:
    """Count the device-to-host reads made inside the ``with`` block (on either backend).

        with count_host_reads() as reads:
            train_epoch(...)
        len(reads), reads.by_site()      # e.g. 2, {"train.train_epoch > train._flush": 2}

    ``sites`` lists each read's call site in order: "module.function" of the code that read, after its
    caller's when that is library code too ("validate.check_finite > validate.fail_if").
    Blocks nest: an outer one counts the reads of the inner ones too. (A class: a probe, not one of the ops.)
    """

    def __init__(self):
        self.sites = []

    def __enter__(self):
        _counters.append(self)
        return self

    def __exit__(self, *exc_info):
        _counters.remove(self)

    def __len__(self):
        return len(self.sites)

    def by_site(self):
        """{call site: number of reads}, sorted by site."""
        return dict(sorted(collections.Counter(self.sites).items()))
