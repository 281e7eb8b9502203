"""Adding seeds until the declared claims resolve: a group-sequential t test per hypothesis with O'Brien-Fleming-type
alpha spending, and Holm's step-down across the claims by closed testing.

The runner plans looks n_1 < ... < n_K = N (seed counts, e.g. 3, 4, ..., 10), runs seeds in groups and calls
`sequential_family` after each group with every difference so far; it stops when every primary claim is resolved or
N seeds have run. Each hypothesis of `mhmoe.metrics.claims` gets a group-sequential test at a level gamma:

- "differ" (E[d] = 0) is rejected at the first look k with |t_k| >= b_k(gamma), t_k the one-sample t statistic of
  the first n_k differences; the side of t_k there gives supported or contradicted;
- "differ by at least the margin" (|E[d]| >= m) is rejected once t(d + m) >= c_k(gamma) at some look and
  t(d - m) <= -c_k(gamma) at some look: two one-sided sequential tests at gamma each, an intersection-union test
  (Berger & Hsu 1996), so, as in the fixed-sample TOST, gamma is not halved.

The boundaries spend gamma over the looks by the Lan-DeMets (1983) O'Brien-Fleming-type function
f(tau) = 2 - 2 Phi(z_{1 - gamma/2} / sqrt(tau)), tau_k = n_k / N (Jennison & Turnbull 2000, ch. 7): b_k is set so
that the chance, under E[d] = 0, of a first crossing at look k is f(tau_k) - f(tau_{k-1}). Departure from the
Brownian-motion boundaries of the textbook: t statistics with few seeds are far from Brownian motion, so b_k is
computed by simulation from the exact joint law of (t_1, ..., t_K) for Gaussian differences, which is the same
for every sigma (t is scale-free): the first look exactly from Student's t, the later ones as empirical quantiles
of `SIMULATIONS` seeded null sequences, rounded to spend no more than the increment. The size is thus gamma up to
Monte-Carlo error of order sqrt(gamma / SIMULATIONS) ~ 3e-4. The rejection event is "some planned look crosses",
so stopping early, skipping a look or stopping for another claim's sake can only lower the error; a look at an
unplanned seed count is refused.

Across claims, with M hypotheses: closed testing (Marcus, Peritz & Gabriel 1976) with Bonferroni local tests, an
intersection H_J rejected when some member crossed at level alpha / |J| at some look so far. Each local test has
size <= alpha by the union bound, whatever the dependence between claims (they share seeds). Its shortcut is
Holm's step-down: test all at alpha / M, reject those crossed, retest the rest at alpha / (M - rejected), until
nothing new (the graphical approach of Maurer & Bretz 2013 with Holm's weights). The shortcut needs boundaries
that fall as the level rises, which is checked before each step up. Wrong-sign rejections carry the caveat of
`mhmoe.metrics.claims`. A rejection, once made, stands: crossings only accumulate.

Assumes Gaussian per-seed differences, like every t test here. The mean at stopping is reported as observed; on
average it overstates the effect, since stopping at a crossing selects large values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

from mhmoe.claims_spec import Claim
from mhmoe.errors import ConfigError
from mhmoe.metrics.claims import ALPHA, CONTRADICTED, NOT_RESOLVED, SUPPORTED, equivalent_word

SIMULATIONS = 400_000
"""Null sequences the boundaries are computed from (about 30 MB for 10 seeds, a second per look plan)."""
SEED = 20_251_025
"""Fixed, so the boundaries of a look plan are the same numbers in every process."""


def obf_spending(fraction: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending, the alpha spent by information fraction tau:
    2 - 2 Phi(z_{1-alpha/2} / sqrt(tau)), from 0 at tau = 0 to alpha at tau = 1."""
    tau = np.asarray(fraction, dtype=float)
    return 2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(tau))


def t_paths(differences: np.ndarray, looks: Sequence[int], shift: float = 0.0) -> np.ndarray:
    """The t statistic (mean - shift) / (s / sqrt(n)) of the first n differences, for each n in `looks`, along the
    last axis; +-inf (0 at the shift) when s = 0. Sums run over d - d_1, so a large mean costs no precision."""
    d = np.asarray(differences, dtype=float)
    n = np.asarray(looks)
    y = d - d[..., :1]
    sums, squares = np.cumsum(y, axis=-1)[..., n - 1], np.cumsum(y * y, axis=-1)[..., n - 1]
    s = np.sqrt(np.maximum(squares - sums * sums / n, 0.0) / (n - 1))
    gap = sums / n + (d[..., :1] - shift)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, gap / (s / np.sqrt(n)), np.where(gap == 0, 0.0, np.copysign(np.inf, gap)))


def check_looks(looks: Sequence[int]) -> tuple[int, ...]:
    """Planned seed counts: increasing integers, the first at least 2 (a t statistic needs two seeds)."""
    plan = tuple(looks)
    ok = plan and all(isinstance(n, int) and not isinstance(n, bool) for n in plan) and plan[0] >= 2
    if not ok or any(b <= a for a, b in zip(plan, plan[1:], strict=False)):
        raise ConfigError(f"sequential claims: field 'looks' must be increasing seed counts >= 2, got {list(looks)!r}")
    return plan


@lru_cache(maxsize=2)
def _null_t(looks: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return t_paths(rng.standard_normal((SIMULATIONS, looks[-1])), looks)


@lru_cache(maxsize=256)
def t_boundaries(looks: tuple[int, ...], alpha: float, sides: int = 2) -> tuple[float, ...]:
    """b_1..b_K for |t| (sides 2) or t (sides 1) at the planned `looks`, spending `alpha` by `obf_spending`."""
    null = _null_t(check_looks(looks))
    stat = np.abs(null) if sides == 2 else null
    spend = np.diff(obf_spending(np.asarray(looks) / looks[-1], alpha), prepend=0.0)
    alive, bounds = np.ones(len(stat), dtype=bool), []
    for k, n in enumerate(looks):
        if k == 0:  # no earlier look: Student's t gives it exactly
            b = float(stats.t.isf(spend[0] / sides, n - 1))
        else:
            values, count = stat[alive, k], int(spend[k] * SIMULATIONS)  # floor: never spend more than planned
            b = math.inf if count == 0 else float(np.partition(values, len(values) - count)[len(values) - count])
        bounds.append(b)
        alive &= stat[:, k] < b
    return tuple(bounds)


def _first(crossed: np.ndarray) -> int | None:
    hits = np.flatnonzero(crossed)
    return int(hits[0]) if len(hits) else None


@dataclass(frozen=True)
class _Hypothesis:
    """One hypothesis's statistics at the looks done: |t| of E[d] = 0 (sides 2), or for a margin m the pair
    t(d + m) and -t(d - m), each rejecting its side when it reaches the one-sided boundary (sides 1)."""

    claim: int
    kind: str
    statistics: tuple[np.ndarray, ...]
    sides: int

    def crossing(self, plan: tuple[int, ...], level: float) -> int | None:
        """Index of the first look done by which every statistic has reached its boundary at `level`."""
        bounds = np.asarray(t_boundaries(plan, level, self.sides)[: len(self.statistics[0])])
        firsts = [_first(stat >= bounds) for stat in self.statistics]
        return None if None in firsts else max(firsts)


def _hypotheses(claims: Sequence[Claim], d: np.ndarray, t: np.ndarray, done: tuple[int, ...]) -> list[_Hypothesis]:
    """Every claim's "differ" hypothesis, then every declared margin's, as in `mhmoe.metrics.claims`."""
    found = [_Hypothesis(i, "differ", (np.abs(t[i]),), 2) for i in range(len(claims))]
    for i, c in enumerate(claims):
        if c.margin is not None:  # rejects E[d] <= -margin, and E[d] >= +margin
            found.append(_Hypothesis(i, "margin", (t_paths(d[i], done, -c.margin), -t_paths(d[i], done, c.margin)), 1))
    return found


@dataclass(frozen=True)
class SequentialDecision:
    """One claim after the latest look."""

    claim: Claim
    verdict: str
    n: int
    """Seeds so far."""
    mean: float
    """Mean difference so far (as observed; see the module docstring on its bias)."""
    t: float
    """t statistic of E[d] = 0 so far."""
    level: float
    """The level its "differ" hypothesis was rejected at, or is now tested at (Holm's alpha / (M - rejected))."""
    boundary: float
    """The two-sided boundary for |t| at this look and `level`."""
    resolved_at: int | None
    """The seed count at which the verdict was first reached; None while not resolved."""
    agreeing: int
    """Seeds whose difference has the predicted sign (display only)."""
    within_margin: bool = False

    @property
    def resolved(self) -> bool:
        return self.verdict != NOT_RESOLVED


@dataclass(frozen=True)
class SequentialFamily:
    """Every claim's decision after the latest look, and whether to stop adding seeds."""

    decisions: list[SequentialDecision]
    stop: bool
    """Every primary claim is resolved, or the last planned look has been reached."""
    n: int
    looks: tuple[int, ...]
    alpha: float


def _checked(claims: Sequence[Claim], differences: Sequence[Sequence[float]], plan: tuple[int, ...]) -> np.ndarray:
    if len(claims) != len(differences) or not claims:
        raise ValueError(f"sequential_family: {len(claims)} claims against {len(differences)} lists of differences")
    lengths = {len(d) for d in differences}
    if len(lengths) != 1:
        raise ValueError(f"sequential_family: every claim needs the same seeds, got {sorted(lengths)} differences")
    d = np.asarray(differences, dtype=float)
    if d.shape[1] not in plan or not np.all(np.isfinite(d)):
        raise ValueError(f"sequential_family: {d.shape[1]} finite differences is not a planned look {list(plan)}")
    if not any(c.primary for c in claims):
        raise ConfigError("sequential claims: no claim has 'primary: true', so nothing decides when to stop")
    return d


def _check_consonant(plan: tuple[int, ...], low: float, high: float) -> None:
    """Holm's shortcut of the closed test holds only if a crossing at a lower level is one at a higher level too."""
    for sides in (1, 2):
        if any(h > lo for h, lo in zip(t_boundaries(plan, high, sides), t_boundaries(plan, low, sides), strict=True)):
            raise RuntimeError(f"looks {list(plan)}: boundaries at level {high:.4g} exceed those at {low:.4g}")


def _step_down(hypotheses: list[_Hypothesis], plan: tuple[int, ...], alpha: float) -> dict:
    """Holm's step-down over the hypotheses by their crossings so far: {(claim, kind): (level, look index)}."""
    rejected: dict = {}
    while len(rejected) < len(hypotheses):
        level = alpha / (len(hypotheses) - len(rejected))
        if rejected:
            _check_consonant(plan, alpha / len(hypotheses), level)
        new = {}
        for h in hypotheses:
            if (h.claim, h.kind) not in rejected and (look := h.crossing(plan, level)) is not None:
                new[(h.claim, h.kind)] = (level, look)
        if not new:
            break
        rejected |= new
    return rejected


def _decision(
    claim: Claim,
    d: np.ndarray,
    t: np.ndarray,
    plan: tuple[int, ...],
    differ: tuple | None,
    margin: tuple | None,
    free: float,
) -> SequentialDecision:
    """A claim's verdict from the (level, look index) at which its hypotheses were rejected, if they were; `free` is
    the level its unrejected hypotheses are now tested at."""
    if differ is not None:
        (level, look), verdict = differ, SUPPORTED if t[differ[1]] * claim.sign > 0 else CONTRADICTED
    elif margin is not None:
        level, look, verdict = free, margin[1], equivalent_word(claim.margin)
    else:
        level, look, verdict = free, None, NOT_RESOLVED
    return SequentialDecision(
        claim=claim,
        verdict=verdict,
        n=len(d),
        mean=float(d.mean()),
        t=float(t[-1]),
        level=level,
        boundary=t_boundaries(plan, level, 2)[len(t) - 1],
        resolved_at=None if look is None else plan[look],
        agreeing=int(np.sum(np.sign(d) == claim.sign)),
        within_margin=margin is not None,
    )


def sequential_family(
    claims: Sequence[Claim], differences: Sequence[Sequence[float]], looks: Sequence[int], alpha: float = ALPHA
) -> SequentialFamily:
    """Every claim's decision after the latest look and whether to stop (see the module docstring).

    `differences[i]` are claim i's per-seed differences a - b, every seed so far in the order run; their count must
    be one of the planned `looks`, the same plan at every call.
    """
    plan = check_looks(looks)
    d = _checked(claims, differences, plan)
    done = tuple(n for n in plan if n <= d.shape[1])
    t = t_paths(d, done)
    hypotheses = _hypotheses(claims, d, t, done)
    rejected = _step_down(hypotheses, plan, alpha)
    free = alpha / max(1, len(hypotheses) - len(rejected))
    decisions = [
        _decision(c, d[i], t[i], plan, rejected.get((i, "differ")), rejected.get((i, "margin")), free)
        for i, c in enumerate(claims)
    ]
    primaries_done = all(x.resolved for x in decisions if x.claim.primary)
    return SequentialFamily(decisions, primaries_done or d.shape[1] == plan[-1], d.shape[1], plan, alpha)


def sequential_decision(
    claim: Claim, differences: Sequence[float], looks: Sequence[int], alpha: float = ALPHA
) -> tuple[bool, SequentialDecision]:
    """One claim on its own, a family of one (two hypotheses if it declares a margin): (stop, decision)."""
    family = sequential_family([claim], [differences], looks, alpha)
    return family.stop, family.decisions[0]


def sequential_sentence(decision: SequentialDecision, looks: Sequence[int], label: str | None = None) -> str:
    """One line from the numbers, e.g. "a vs b, loss-BWT (predicted lower): -2.20 over 6 seeds (t -5.10, boundary
    ±4.29 at level 0.025, O'Brien-Fleming looks at 3-10 seeds; sign agrees 6/6): supported at 6 seeds"."""
    x, claim = decision, decision.claim
    consecutive = list(looks) == list(range(looks[0], looks[-1] + 1))
    plan = f"{looks[0]}-{looks[-1]}" if consecutive else ", ".join(map(str, looks))
    numbers = (
        f"t {x.t:.2f}, boundary ±{x.boundary:.2f} at level {x.level:.3g}, O'Brien-Fleming looks at {plan} seeds; "
        f"sign agrees {x.agreeing}/{x.n}"
    )
    verdict = x.verdict if x.resolved_at is None else f"{x.verdict} at {x.resolved_at} seeds"
    if x.within_margin and x.verdict in (SUPPORTED, CONTRADICTED):
        verdict += f", and within ±{claim.margin:g}"
    head = f"{claim.a} vs {claim.b}, {label or claim.metric} (predicted {claim.direction})"
    return f"{head}: {x.mean:.2f} over {x.n} seeds ({numbers}): {verdict}"
