"""Verdicts on a family of declared claims from per-seed paired differences, with Holm's family-wise error control.

Each claim (`mhmoe.claims_spec.Claim`) is tested on d_s = value(a) - value(b) over seeds s = 1..n, the seed being
the independent unit. Its hypotheses join one family:

- "a and b differ": H0 E[d] = 0, a one-sample two-sided Student t test of d against 0;
- "a and b differ by at least the margin" (only for claims that declare a margin m > 0): H0 |E[d]| >= m, two
  one-sided t tests (TOST, Schuirmann 1987), whose p value is the larger of the two one-sided ones.

Holm's step-down procedure (Holm 1979) adjusts the family's p values; it keeps the family-wise error rate at alpha
under any dependence between the tests (the claims share seeds, so they are dependent). Verdicts, one rule each:

- supported:     Holm-adjusted p of "differ" < alpha and the mean difference on the predicted side;
- contradicted:  Holm-adjusted p of "differ" < alpha and the mean difference on the other side;
- equivalent within ±m: the claim declares m, "differ" is not rejected, and the Holm-adjusted TOST p < alpha,
  so the (1 - 2 alpha_E) t interval lies inside (-m, m);
- not resolved:  otherwise.

alpha_E is the level Holm's step-down tests the TOST hypothesis at, alpha / (M - rank + 1) (alpha / M at worst):
equivalence is a member of the family, so its errors count against the same alpha as the differences'. Each
one-sided test runs at alpha_E, not alpha_E / 2, because equivalence needs both to reject: an intersection-union
test, whose size is at most alpha_E (Berger & Hsu 1996).

A claim whose difference is both resolved and inside ±m is "supported" or "contradicted", and `within_margin` says
so. The sign of a resolved difference is read off the two-sided test; Holm bounds the chance of a false rejection,
and a wrong-sign rejection is one (Shaffer 1980 proves the directional version for independent tests; for
dependent ones it is the usual working assumption). Counts of seeds agreeing with the predicted sign are for
display only. Metric bounds (a difference of two 0-100 scores lies in [-100, 100]) play no part: every verdict is
decided by the t tests alone, so none rests on the part of an interval outside the bounds. The tests assume
roughly Gaussian differences; differences with zero spread give t = +-inf (p 0), or t = 0 when they are all 0.

This is the fixed-sample analysis: n decided before the seeds ran. A run that adds seeds until the claims resolve
must use `mhmoe.metrics.sequential` instead; these p values are not valid after such optional stopping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mhmoe.claims_spec import Claim
from mhmoe.metrics.uncertainty import CONFIDENCE, Interval, t_interval

ALPHA = 0.05
"""The family-wise error rate the verdicts are held to."""

SUPPORTED, CONTRADICTED, NOT_RESOLVED = "supported", "contradicted", "not resolved"


def equivalent_word(margin: float) -> str:
    return f"equivalent within ±{margin:g}"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p values: sorted p_(1) <= ... <= p_(M), adjusted p_(i) = max_{j<=i} min(1,
    (M - j + 1) p_(j)); so they are monotone in p and capped at 1. Computed by statsmodels' multipletests."""
    if len(p_values) == 0:
        return []
    # statsmodels loads pandas, about a second: only pay for it when a family is tested
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(np.asarray(p_values, dtype=float), method="holm")[1]]


def holm_levels(p_values: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """The level alpha / (M - rank + 1) at which Holm's step-down tests each p value (rank 1 the smallest)."""
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    levels = [0.0] * len(p_values)
    for rank, i in enumerate(order):
        levels[i] = alpha / (len(p_values) - rank)
    return levels


def _checked(differences: Sequence[float], what: str) -> np.ndarray:
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) < 2 or not np.all(np.isfinite(d)):
        raise ValueError(f"{what}: needs at least 2 finite per-seed differences, got {list(differences)!r}")
    return d


def t_statistic(differences: Sequence[float], shift: float = 0.0) -> float:
    """(mean(d) - shift) / (s / sqrt(n)), s the sample standard deviation; +-inf (0 at the shift) when s = 0."""
    d = np.asarray(differences, dtype=float)
    gap, s = float(d.mean()) - shift, float(d.std(ddof=1))
    if s == 0:
        return 0.0 if gap == 0 else math.copysign(math.inf, gap)
    return gap / (s / math.sqrt(len(d)))


def two_sided_p(differences: Sequence[float]) -> float:
    """The two-sided one-sample t test of E[d] = 0: 2 P(T_{n-1} >= |t|)."""
    d = _checked(differences, "two_sided_p")
    return float(min(1.0, 2 * stats.t.sf(abs(t_statistic(d)), len(d) - 1)))


def tost_p(differences: Sequence[float], margin: float) -> float:
    """TOST of H0 |E[d]| >= margin: the larger of P(T >= t(d + margin)) and P(T <= t(d - margin)), T ~ t_{n-1}.

    Rejecting at level a is the same as the (1 - 2a) t interval lying inside (-margin, margin)."""
    d = _checked(differences, "tost_p")
    df = len(d) - 1
    above_minus = stats.t.sf(t_statistic(d, -margin), df)  # H0 E[d] <= -margin
    below_plus = stats.t.cdf(t_statistic(d, margin), df)  # H0 E[d] >= +margin
    return float(max(above_minus, below_plus))


@dataclass(frozen=True)
class ClaimResult:
    """One claim's numbers in its family and its verdict."""

    claim: Claim
    differences: tuple[float, ...]
    """d_s = value(a) - value(b), one per seed, in seed order."""
    interval: Interval
    """The mean difference and its nominal 95% two-sided t interval."""
    adjusted: Interval
    """The t interval at confidence 1 - `level`, Holm's level for "differ": it excludes 0, on the verdict's side,
    for every supported or contradicted claim. It can exclude 0 for a claim left unresolved when the step-down
    stopped earlier, and it is not a simultaneous interval (for that, take 1 - alpha / `family_size`)."""
    level: float
    """Holm's level alpha / (M - rank + 1) for this claim's "differ" hypothesis."""
    p: float
    """Raw two-sided p of E[d] = 0."""
    p_holm: float
    agreeing: int
    """Seeds whose difference has the predicted sign (display only; zero agrees with neither side)."""
    verdict: str
    alpha: float
    family_size: int
    """M, the number of hypotheses in the family (one per claim plus one per declared margin)."""
    p_equivalence: float | None = None
    """Raw TOST p of |E[d]| >= margin, when a margin is declared."""
    p_equivalence_holm: float | None = None
    equivalence_level: float | None = None
    """alpha_E, Holm's level for the TOST hypothesis."""
    equivalence: Interval | None = None
    """The t interval at confidence 1 - 2 alpha_E: equivalence is concluded iff it lies inside (-margin, margin)
    and the step-down reached this hypothesis."""
    within_margin: bool = False
    """Whether the Holm-adjusted TOST rejects, whatever the verdict."""

    @property
    def n(self) -> int:
        return len(self.differences)


def _verdict(claim: Claim, mean: float, p_holm: float, p_equivalence_holm: float | None, alpha: float) -> str:
    if p_holm < alpha:
        return SUPPORTED if mean * claim.sign > 0 else CONTRADICTED
    if p_equivalence_holm is not None and p_equivalence_holm < alpha:
        return equivalent_word(claim.margin)
    return NOT_RESOLVED


def judge_claims(
    claims: Sequence[Claim], differences: Sequence[Sequence[float]], alpha: float = ALPHA
) -> list[ClaimResult]:
    """Every claim's verdict, its p values Holm-adjusted over the whole family (see the module docstring).

    `differences[i]` are claim i's per-seed differences a - b; at least 2 per claim.
    """
    if len(claims) != len(differences):
        raise ValueError(f"judge_claims: {len(claims)} claims against {len(differences)} lists of differences")
    if not 0 < alpha < 1:
        raise ValueError(f"judge_claims: alpha must be in (0, 1), got {alpha!r}")
    ds = [_checked(d, f"claim {c}") for c, d in zip(claims, differences, strict=True)]
    raw = [two_sided_p(d) for d in ds]
    with_margin = [i for i, c in enumerate(claims) if c.margin is not None]
    raw += [tost_p(ds[i], claims[i].margin) for i in with_margin]
    adjusted, levels = holm(raw), holm_levels(raw, alpha)
    equivalence = {i: len(claims) + k for k, i in enumerate(with_margin)}
    results = []
    for i, (claim, d) in enumerate(zip(claims, ds, strict=True)):
        interval = t_interval(d, CONFIDENCE)
        e = equivalence.get(i)
        p_eq, p_eq_holm = (raw[e], adjusted[e]) if e is not None else (None, None)
        results.append(
            ClaimResult(
                claim=claim,
                differences=tuple(float(x) for x in d),
                interval=interval,
                adjusted=t_interval(d, 1 - levels[i]),
                level=levels[i],
                p=raw[i],
                p_holm=adjusted[i],
                agreeing=int(np.sum(np.sign(d) == claim.sign)),
                verdict=_verdict(claim, interval.mean, adjusted[i], p_eq_holm, alpha),
                alpha=alpha,
                family_size=len(raw),
                p_equivalence=p_eq,
                p_equivalence_holm=p_eq_holm,
                equivalence_level=levels[e] if e is not None else None,
                equivalence=t_interval(d, 1 - 2 * levels[e]) if e is not None else None,
                within_margin=p_eq_holm is not None and p_eq_holm < alpha,
            )
        )
    return results


def format_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def claim_sentence(result: ClaimResult, label: str | None = None) -> str:
    """One line from the numbers, e.g. "mhmoe-full vs loramoe-full, loss-BWT (predicted lower): -2.20 [-3.47, -0.93]
    (p 0.012, Holm-adjusted 0.036, 5 seeds, sign agrees 5/5): supported". `label` names the metric (its key by
    default); the interval is the nominal 95% one, and an equivalence adds its (1 - 2 alpha_E) interval."""
    claim = result.claim
    numbers = (
        f"p {format_p(result.p)}, Holm-adjusted {format_p(result.p_holm)}, {result.n} seeds, "
        f"sign agrees {result.agreeing}/{result.n}"
    )
    verdict = result.verdict
    if result.within_margin:
        confidence = 100 * (1 - 2 * result.equivalence_level)
        inside = f"{confidence:.1f}% interval [{result.equivalence.low:.2f}, {result.equivalence.high:.2f}]"
        if verdict in (SUPPORTED, CONTRADICTED):
            verdict += f", and within ±{claim.margin:g} ({inside})"
        else:
            verdict += f" ({inside}, TOST Holm-adjusted {format_p(result.p_equivalence_holm)})"
    head = f"{claim.a} vs {claim.b}, {label or claim.metric} (predicted {claim.direction})"
    return f"{head}: {result.interval} ({numbers}): {verdict}"
