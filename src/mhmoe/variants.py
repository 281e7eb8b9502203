"""Named variants: several configurations of one method in one run, each under its own name.

A run's rows are its entries: every name in `methods` (the method with the run's `adapters.<kind>` and
`method_options.<method>`), then every `variants` entry, e.g.

    variants:
      mhmoe-h2: {method: mhmoe, adapter: {heads: 2}, match: none}
      loramoe-k26-top5: {method: loramoe, adapter: {experts: 26, top_k: 5}, match: total}

An entry's name is its row in every table, its key in results.json and its folder under adapters/. This
module holds a variant as written; `mhmoe.cl.entries` resolves it against the registries into an `Entry`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MATCH_MODES = ("activated", "total", "none")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""Entry names become folder names, so they are kept to letters, digits and . _ + -."""


@dataclass
class Variant:
    """One `variants.<name>` mapping, as written in a config."""

    method: str
    """The method this variant runs (see `mhmoe run --help`)."""
    adapter: dict[str, Any] = field(default_factory=dict)
    """Fields of the method's adapter kind that replace the run's `adapters.<kind>` ones, e.g. {heads: 2}."""
    method_options: dict[str, Any] = field(default_factory=dict)
    """Fields that replace the run's `method_options.<method>` ones for this variant."""
    match: str = "activated"
    """Budget its rank is matched to, against the run's `match_activated` adapter: 'activated' (parameters
    per token, the research's comparison), 'total' (all adapter parameters) or 'none' (the rank as set)."""
