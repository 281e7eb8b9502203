"""What the router input encodes, and in which heads (research eq. 1-2 and appendix A.1).

A multinomial linear probe per feature reads frozen router inputs h (standardised) and is scored on the
tokens of held-out examples against chance (the majority class's share): the split is by example, because
task and label are per sequence and a token split would let the probe recognise the sequence. Two
features' decoding subspaces are the row spaces of their probe weights W_Y in raw h coordinates (eq. 2;
the scaler is undone on the weights); their overlap is the mean squared cosine of the principal angles
between them (1: the same directions, 0: orthogonal). Head ablation replaces head m's slice of h by its
mean over the probe's training tokens: the accuracy drop is head m's importance, and the importances,
clipped at zero and normalised over heads, are the head shares.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import subspace_angles
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Probe:
    model: Pipeline
    accuracy: float
    chance: float
    """The majority class's share of the test tokens."""

    @property
    def weights(self) -> np.ndarray:
        """W_Y in raw h coordinates, one row per class (one row for two classes).

        The probe reads z = (h - mu) / sigma, so W_std z = (W_std / sigma) h + const: the raw weights divide
        each column by the scaler's sigma.
        """
        return self.model[-1].coef_ / self.model[0].scale_


def split_examples(examples: np.ndarray, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/test split of token indices by example: every token of an example is on one side."""
    owners = np.random.default_rng(seed).permutation(np.unique(examples))
    cut = min(max(int(round(len(owners) * test_share)), 1), len(owners) - 1) if len(owners) > 1 else 0
    test = np.isin(examples, owners[:cut])
    return np.flatnonzero(~test), np.flatnonzero(test)


def train_probe(
    h_train: np.ndarray, y_train: np.ndarray, h_test: np.ndarray, y_test: np.ndarray, *, max_iter: int = 300
) -> Probe | None:
    """A multinomial logistic probe on standardised h; None when the training tokens hold one class."""
    if len(np.unique(y_train)) < 2 or len(y_test) == 0:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    with warnings.catch_warnings():
        # Separable features (e.g. the task) keep lbfgs growing the weights past max_iter; the accuracy
        # has long settled by then, and a warning per probe would drown the progress bars.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(h_train, y_train)
    _, counts = np.unique(y_test, return_counts=True)
    return Probe(model, float(model.score(h_test, y_test)), float(counts.max() / len(y_test)))


def subspace_overlap(w_a: np.ndarray, w_b: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between the row spaces of two probes' weights."""
    return float(np.mean(np.cos(subspace_angles(w_a.T, w_b.T)) ** 2))


def head_importance(
    probe: Probe, h_train: np.ndarray, h_test: np.ndarray, y_test: np.ndarray, heads: int
) -> np.ndarray:
    """Accuracy drop when head m's slice of h is replaced by its training mean, for every head m."""
    width = h_test.shape[1] // heads
    means = h_train.mean(axis=0)
    drops = []
    for m in range(heads):
        ablated = h_test.copy()
        ablated[:, m * width : (m + 1) * width] = means[m * width : (m + 1) * width]
        drops.append(probe.accuracy - probe.model.score(ablated, y_test))
    return np.array(drops)


def head_shares(importance: np.ndarray) -> np.ndarray:
    """Importances clipped at zero and normalised to sum to one (all zeros if no head matters)."""
    clipped = np.clip(importance, 0, None)
    total = clipped.sum()
    return clipped / total if total > 0 else clipped
