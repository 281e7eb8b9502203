"""Per-example scorers on a 0-100 scale, named by registry key so task specs and configs can refer to them.

accuracy: exact match of the stripped generation against the stripped answer (the default for TRACE's
  classification and arithmetic tasks: generations are stripped when decoded, so stripping the answer too keeps
  stray whitespace in a data file from counting as a wrong answer; on TRACE's own answers both variants agree).
accuracy_exact: TRACE's literal comparison, `prediction == answer`.
first_char: ScienceQA's accuracy on the first character (the option letter); an empty generation scores 0.
rouge_l: ROUGE-L F1 (the `rouge-score` package, as TRACE uses).
similarity: fuzzy edit similarity (`rapidfuzz.fuzz.ratio`, equal to fuzzywuzzy's), as TRACE scores code.
py150_similarity: `similarity` after Py150's literal placeholders are replaced by values, as TRACE does.
sari: SARI against the example's prompt as the source, computed as TRACE computes it (Hugging Face
  `datasets`' SARI: lower-cased 13a tokens, n-gram counts, per-order F1), the default for 20Minuten so scores
  compare with published TRACE numbers (see metrics/sari.py).
sari_paper: SARI exactly as Xu et al. (2016) define it (n-gram sets, F1 of the averaged P and R, raw tokens).
An empty prediction/reference pair scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache

from rapidfuzz import fuzz

from mhmoe.metrics.sari import sari_score, trace_sari_score


def accuracy_exact(prediction: str, answer: str) -> float:
    if not prediction and not answer:
        return 0.0
    return 100.0 if prediction == answer else 0.0


def accuracy(prediction: str, answer: str) -> float:
    return accuracy_exact(prediction.strip(), answer.strip())


_PUNCTUATION = re.compile(r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]")


def normalized_text(text: str) -> str:
    """Lower-cased, ASCII punctuation removed, whitespace collapsed (SQuAD's normalisation without dropping
    articles, as the CL Benchmark's exact match in O-LoRA's forks)."""
    return " ".join(_PUNCTUATION.sub("", text.lower()).split())


def exact_match(prediction: str, answer: str) -> float:
    """Exact match after `normalized_text`: "Sports." matches "sports"."""
    return accuracy_exact(normalized_text(prediction), normalized_text(answer))


def first_char(prediction: str, answer: str) -> float:
    prediction, answer = prediction.strip(), answer.strip()
    if not prediction or not answer:
        return 0.0
    return 100.0 if prediction[0] == answer[0] else 0.0


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


# <NUM_LIT> -> 0, <STR_LIT> and <CHAR_LIT> -> empty, <KIND_LIT:value> -> value.
_PY150_LITERAL = re.compile(r"<(NUM|STR|CHAR)_LIT(?::([^>]*))?>")


def py150_literals(code: str) -> str:
    """Py150's normalised literals replaced by values."""
    return _PY150_LITERAL.sub(
        lambda m: m.group(2) if m.group(2) is not None else ("0" if m.group(1) == "NUM" else ""), code
    )


def py150_similarity(prediction: str, answer: str) -> float:
    return similarity(py150_literals(prediction), py150_literals(answer))


def sari(prediction: str, answer: str, source: str) -> float:
    if not prediction.strip() or not answer.strip():
        return 0.0
    return trace_sari_score(source, prediction, [answer])


def sari_paper(prediction: str, answer: str, source: str) -> float:
    if not prediction.strip() or not answer.strip():
        return 0.0
    return sari_score(source, prediction, [answer])


SCORERS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "accuracy_exact": accuracy_exact,
    "exact_match": exact_match,
    "first_char": first_char,
    "rouge_l": rouge_l,
    "similarity": similarity,
    "py150_similarity": py150_similarity,
    "sari": sari,
    "sari_paper": sari_paper,
}
NEEDS_SOURCE = {"sari", "sari_paper"}
BINARY = {"accuracy", "accuracy_exact", "exact_match", "first_char"}
"""Scorers whose per-example scores are 0 or 100, so a task score is a binomial proportion."""


def example_scores(
    scorer: str, predictions: Sequence[str], answers: Sequence[str], sources: Sequence[str] | None = None
) -> list[float]:
    """Each example's score (0-100); `sources` only for SARI."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    score = SCORERS[scorer]
    if scorer in NEEDS_SOURCE:
        if sources is None or len(sources) != len(answers):
            raise ValueError(f"scorer '{scorer}' needs one source text per answer")
        return [score(p, a, s) for p, a, s in zip(predictions, answers, sources, strict=True)]
    return [score(p, a) for p, a in zip(predictions, answers, strict=True)]


def mean_score(
    scorer: str, predictions: Sequence[str], answers: Sequence[str], sources: Sequence[str] | None = None
) -> float:
    """The task score: the mean of per-example scores (0 for no examples); `sources` only for SARI."""
    return sum(example_scores(scorer, predictions, answers, sources)) / max(len(answers), 1)
