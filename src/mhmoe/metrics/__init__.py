"""Continual-learning metrics over the score matrix R and loss matrix L, their uncertainty, and text scorers."""

from mhmoe.metrics.cl import bwt, bwt_eq21, final_old_loss, forgetting_curves, fwt, loss_bwt, op

__all__ = ["bwt", "bwt_eq21", "final_old_loss", "forgetting_curves", "fwt", "loss_bwt", "op"]
