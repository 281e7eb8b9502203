"""Continual-learning metrics over the score matrix R and loss matrix L, their uncertainty, and text scorers."""

from mhmoe.metrics.cl import bwt, forgetting_curves, fwt, loss_bwt, op

__all__ = ["bwt", "forgetting_curves", "fwt", "loss_bwt", "op"]
