"""Maintenance tools that keep minisegnet small and readable (``python -m minisegnet.tools.size``)."""
