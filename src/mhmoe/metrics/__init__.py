"""Continual-learning metrics over the score matrix R, and per-example text scorers."""

from mhmoe.metrics.cl import bwt, fwt, op

__all__ = ["bwt", "fwt", "op"]
