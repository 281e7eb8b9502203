"""SARI (Xu et al., 2016, "Optimizing Statistical Machine Translation for Text Simplification", section 4.1),
written from the paper's definition, as TRACE scores 20Minuten.

For each n-gram order n = 1..4, over the n-grams g of the source I, the output O and the r references R:
  add:  p = |(O - I) & R| / |O - I|,  r = |(O - I) & R| / |R - I|   (binary occurrence; R = any reference)
  keep: p = sum_{g in I} min(o_g, f_g) / sum o_g,  r = the same / sum f_g
  del:  p = sum_{g in I} min(1 - o_g, 1 - f_g) / sum (1 - o_g)
where o_g = 1 if g occurs in O, f_g = the fraction of references containing g. P and R of each operation are
averaged over n, F = 2PR / (P + R), and SARI = (F_add + F_keep + P_del) / 3, reported on 0-100.
The paper leaves 0/0 open (nothing to add, keep or delete); here it is 1: doing nothing where nothing was
due is right. Tokens are whitespace-separated and case-sensitive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a


def _ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 1.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _order_scores(source: list[str], output: list[str], references: list[list[str]], n: int) -> tuple:
    """(p_add, r_add, p_keep, r_keep, p_del) for n-grams of order n."""
    src, out = _ngrams(source, n), _ngrams(output, n)
    ref_sets = [_ngrams(ref, n) for ref in references]
    in_any_ref = set().union(*ref_sets)
    share = {g: sum(g in ref for ref in ref_sets) / len(ref_sets) for g in src}
    added, due = out - src, in_any_ref - src
    kept = sum(min(g in out, share[g]) for g in src)
    deleted = sum(min(g not in out, 1 - share[g]) for g in src)
    return (
        _ratio(len(added & in_any_ref), len(added)),
        _ratio(len(added & in_any_ref), len(due)),
        _ratio(kept, sum(g in out for g in src)),
        _ratio(kept, sum(share.values())),
        _ratio(deleted, sum(g not in out for g in src)),
    )


def sari_score(source: str, prediction: str, references: Sequence[str], max_order: int = 4) -> float:
    """SARI of one prediction against its source and references, on 0-100."""
    if not references:
        raise ValueError("sari needs at least one reference")
    per_order = [
        _order_scores(source.split(), prediction.split(), [r.split() for r in references], n)
        for n in range(1, max_order + 1)
    ]
    p_add, r_add, p_keep, r_keep, p_del = (sum(column) / max_order for column in zip(*per_order, strict=True))
    return 100.0 * (_f1(p_add, r_add) + _f1(p_keep, r_keep) + p_del) / 3


# TRACE's own scores come from the SARI of Hugging Face `datasets` (load_metric("sari")), which follows
# tensor2tensor rather than the paper: text is lower-cased and tokenised with sacrebleu's 13a tokenizer;
# keep and delete count n-gram occurrences (each source and output count multiplied by the number of
# references, against the references' summed counts) instead of sets; F1 is taken per n-gram order and then
# averaged; every 0/0 is 1. `trace_sari_score` follows those conventions so 20Minuten scores compare with
# published TRACE numbers; `sari_score` above stays the paper's definition.


_TOKENIZE = Tokenizer13a()


def _normalise(text: str) -> list[str]:
    """Lower-case, sacrebleu 13a tokens, split on single spaces (so an empty text is one empty token)."""
    return _TOKENIZE(text.lower()).split(" ")


def _count_ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _trace_order(source: list[str], output: list[str], references: list[list[str]], n: int) -> tuple:
    """(F_keep, P_del, F_add) of one n-gram order, with occurrence counts."""
    copies = len(references)
    src = Counter({g: c * copies for g, c in _count_ngrams(source, n).items()})
    out = Counter({g: c * copies for g, c in _count_ngrams(output, n).items()})
    ref = sum((_count_ngrams(r, n) for r in references), Counter())

    kept = src & out
    kept_good, keep_due = kept & ref, src & ref
    keep_p = _ratio(sum(kept_good[g] / kept[g] for g in kept_good), len(kept))
    keep_r = _ratio(sum(kept_good.values()), sum(keep_due.values()))

    deleted = src - out
    deleted_good = deleted - ref
    del_p = _ratio(sum(deleted_good[g] / deleted[g] for g in deleted_good), len(deleted))

    added, due = set(out) - set(src), set(ref) - set(src)
    add_good = added & set(ref)
    return _f1(keep_p, keep_r), del_p, _f1(_ratio(len(add_good), len(added)), _ratio(len(add_good), len(due)))


def trace_sari_score(source: str, prediction: str, references: Sequence[str], max_order: int = 4) -> float:
    """SARI of one prediction as TRACE computes it (see above), on 0-100."""
    if not references:
        raise ValueError("sari needs at least one reference")
    refs = [_normalise(r) for r in references]
    per_order = [_trace_order(_normalise(source), _normalise(prediction), refs, n) for n in range(1, max_order + 1)]
    keep, delete, add = (sum(column) / max_order for column in zip(*per_order, strict=True))
    return 100.0 * (keep + delete + add) / 3
