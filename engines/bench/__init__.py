"""Measuring variants: the child worker, the runner that drives it, timing and evaluation."""
