"""The declared claims of a run over seeds, tested as one family: the only verdicts a report states.

The primary claims form one Holm family (`mhmoe.metrics.claims`); secondary claims form a second family of
their own and are marked secondary. Every other comparison a report prints (the paired table against the
reference) is exploratory and says so. Pairs are per seed, so any two entries of the run (methods or
variants) can be compared.
"""

from __future__ import annotations

from typing import Any

from mhmoe.claims_spec import Claim
from mhmoe.markdown import markdown_table
from mhmoe.metrics.catalog import METRICS
from mhmoe.metrics.claims import ClaimResult, claim_sentence, format_p, judge_claims


def claim_differences(claim: Claim, per_seed: dict[Any, dict[str, Any]]) -> list[float]:
    """The per-seed differences a - b of the claim's metric, over seeds where both entries have it."""
    found = []
    for run in per_seed.values():
        methods = run["methods"]
        if claim.a in methods and claim.b in methods:
            a, b = methods[claim.a].get(claim.metric), methods[claim.b].get(claim.metric)
            if a is not None and b is not None:
                found.append(a - b)
    return found


def judge(claims: list[Claim], per_seed: dict[Any, dict[str, Any]]) -> list[ClaimResult]:
    """Primary claims as one family, secondary ones as another; in the order declared."""
    results: dict[int, ClaimResult] = {}
    for primary in (True, False):
        family = [(i, c) for i, c in enumerate(claims) if c.primary is primary]
        if family:
            judged = judge_claims([c for _, c in family], [claim_differences(c, per_seed) for _, c in family])
            results |= {i: r for (i, _), r in zip(family, judged, strict=True)}
    return [results[i] for i in range(len(claims))]


def _label(claim: Claim) -> str:
    return f"{claim.a} vs {claim.b}, {METRICS[claim.metric][0]}"


def claims_table(results: list[ClaimResult]) -> str:
    """One row per claim: the predicted side, the mean difference a - b and its 95% interval, raw and
    Holm-adjusted p, sign agreement, and the verdict."""
    header = ["claim (a vs b, metric)", "predicted", "a - b [95%]", "p", "Holm p", "signs", "verdict"]
    rows = []
    for r in results:
        family = "primary" if r.claim.primary else "secondary"
        rows.append(
            [
                f"{_label(r.claim)} ({family})",
                f"a {r.claim.direction}",
                str(r.interval),
                format_p(r.p),
                format_p(r.p_holm),
                f"{r.agreeing}/{len(r.differences)}",
                f"**{r.verdict}**",
            ]
        )
    return markdown_table(header, rows)


def claims_section(claims: list[Claim], per_seed: dict[Any, dict[str, Any]]) -> str:
    """The report's section on the declared claims (empty without claims)."""
    if not claims:
        return ""
    short = [str(c) for c in claims if len(claim_differences(c, per_seed)) < 2]
    if short:
        return f"## Declared claims\n\nNot tested: {', '.join(short)} need at least two seeds with both entries."
    results = judge(claims, per_seed)
    lines = [
        "## Declared claims",
        "Declared in the settings before the run. The primary claims are tested as one family with Holm's "
        "family-wise error control at 0.05 (secondary claims as a family of their own); a verdict is "
        "'supported' or 'contradicted' only when the adjusted test excludes 0, 'equivalent' only from two "
        "one-sided tests against a declared margin, else 'not resolved' (which is not 'no difference'). "
        "Sign counts are shown, never used. Every other comparison in this report is exploratory.",
        claims_table(results),
        "\n".join(f"- {claim_sentence(r, METRICS[r.claim.metric][0])}" for r in results),
    ]
    return "\n\n".join(lines)
