"""Per-example scorers on a 0-100 scale, named by registry key so task specs and configs can refer to them.

accuracy: exact match of the stripped generation against the stripped answer.
rouge_l: ROUGE-L F1 (the `rouge-score` package, as TRACE uses).
similarity: fuzzy edit similarity (`rapidfuzz.fuzz.ratio`, equal to fuzzywuzzy's), as TRACE scores code.
An empty prediction/reference pair scores 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

from rapidfuzz import fuzz


def accuracy(prediction: str, answer: str) -> float:
    return 100.0 if prediction.strip() == answer.strip() else 0.0


@cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(prediction: str, answer: str) -> float:
    if not prediction.strip() or not answer.strip():
        return 0.0
    return 100.0 * _rouge().score(answer, prediction)["rougeL"].fmeasure


def similarity(prediction: str, answer: str) -> float:
    if not prediction.strip() and not answer.strip():
        return 0.0
    return float(fuzz.ratio(prediction.strip(), answer.strip()))


SCORERS: dict[str, Callable[[str, str], float]] = {
    "accuracy": accuracy,
    "rouge_l": rouge_l,
    "similarity": similarity,
}


def mean_score(scorer: str, predictions: Sequence[str], answers: Sequence[str]) -> float:
    """The task score: the mean of per-example scores (0 for no examples)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    score = SCORERS[scorer]
    return sum(score(p, a) for p, a in zip(predictions, answers, strict=True)) / max(len(answers), 1)
