"""Checks for the exercises in ``lessons/exercises/``: ``from minisegnet.exercises import check``.

Each exercise has one call, e.g. ``check.im2col(my_im2col)``, that runs the student's function on small
inputs, compares it with the library (and, for a backward, with central differences), and prints what a
teaching assistant would say: that it passes, or which output is wrong at which element and the likely
mistake. It returns a ``Feedback`` that is true when the answer passed (``.hint`` names the mistake found).
"""
