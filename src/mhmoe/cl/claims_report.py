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
from mhmoe.metrics.sequential import SequentialFamily, sequential_family, sequential_sentence


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


def sequential_judge(claims: list[Claim], per_seed: dict[Any, dict[str, Any]], looks: list[int]) -> SequentialFamily:
    """The claims of a run that added seeds until they resolved: one group-sequential family over its looks
    (primary and secondary together; only the primary ones decide when to stop)."""
    seeds = sorted(per_seed)  # the order the seeds ran in: counts of a plan's looks
    ordered = {seed: per_seed[seed] for seed in seeds}
    return sequential_family(claims, [claim_differences(c, ordered) for c in claims], looks)


def _sequential_lines(claims: list[Claim], per_seed: dict[Any, dict[str, Any]], looks: list[int]) -> list[str]:
    family = sequential_judge(claims, per_seed, looks)
    verdicts = [
        [_label(d.claim), f"{d.mean:.2f}", f"{d.agreeing}/{d.n}", f"**{d.verdict}**"] for d in family.decisions
    ]
    return [
        f"Seeds were added in groups until every primary claim resolved or {looks[-1]} seeds had run (looks at "
        f"{looks} seeds; {family.n} ran). Verdicts come from a group-sequential t test per claim with "
        "O'Brien-Fleming-type alpha spending and Holm's step-down across the claims (family-wise 0.05), valid "
        "under this optional stopping; the mean at stopping tends to overstate the effect.",
        markdown_table(["claim (a vs b, metric)", "a - b (mean)", "signs", "verdict"], verdicts),
        "\n".join(f"- {sequential_sentence(d, looks, METRICS[d.claim.metric][0])}" for d in family.decisions),
    ]


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


def claims_section(claims: list[Claim], per_seed: dict[Any, dict[str, Any]], looks: list[int] | None = None) -> str:
    """The report's section on the declared claims (empty without claims); `looks`: the run added seeds until
    its claims resolved, and they are judged by the group-sequential test."""
    if not claims:
        return ""
    short = [str(c) for c in claims if len(claim_differences(c, per_seed)) < 2]
    if short:
        return f"## Declared claims\n\nNot tested: {', '.join(short)} need at least two seeds with both entries."
    if looks:
        return "\n\n".join(["## Declared claims", *_sequential_lines(claims, per_seed, looks)])
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
