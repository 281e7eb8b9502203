"""Continual learning: evaluation of a model on a stream's tasks (the training loop builds on it)."""
