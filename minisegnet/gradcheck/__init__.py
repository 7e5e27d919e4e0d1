"""Gradient checking, in one home: the checker and the table of cases it runs on every op.

    from minisegnet.gradcheck import gradcheck      # or msn.gradcheck, as torch.autograd.gradcheck
    python -m minisegnet gradcheck                  # every case of the table, as a table of errors

``checker.py`` holds ``gradcheck`` (central differences against ``backward`` with a random
upstream gradient) and what it reports; ``cases.py`` holds ``CASES``, one small float64 case per
op and loss, and ``run_checks``, which runs them. The op tests and the command line use that
table, so each case is written once.
"""

from .checker import GradcheckError, GradcheckReport, gradcheck

__all__ = ["GradcheckError", "GradcheckReport", "gradcheck"]
