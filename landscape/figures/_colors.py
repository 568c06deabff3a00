"""One colour per label, the same in every figure: vanilla red, BatchNorm blue, others a palette.

The unnormalized network ("vanilla", "none", "standard", …) is red and BatchNorm ("batchnorm",
"batch", "bn", …) is blue, as in Santurkar et al. (2018); a label counts as one of them when its
first word is one of those names, so "vanilla lr=0.5" is a (darker) red too. Any other label gets
the next colour of a qualitative palette.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_VANILLA_NAMES = {"vanilla", "none", "standard", "plain", "nobn", "no_bn", "unnormalized",
                  "without_bn", "baseline"}
_BATCHNORM_NAMES = {"batchnorm", "batch", "bn", "batch_norm", "withbn", "with_bn"}
# Shades used in order when several labels share a family (first = the paper's colour).
_REDS = ("#d62728", "#8c1c13", "#f08a7e", "#b2432f", "#ffb3a7")
_BLUES = ("#1f77b4", "#0b3c6b", "#7fb3de", "#3e5f8a", "#b7d4ee")
_OTHERS = ("#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#98df8a", "#ffbb78", "#c5b0d5", "#c49c94")


def _family(label: str) -> str | None:
    """"vanilla", "batch" or None (neither) for a label, by its whole name or its first word."""
    key = label.strip().lower()
    if key.replace(" ", "_") in _VANILLA_NAMES:
        return "vanilla"
    if key.replace(" ", "_") in _BATCHNORM_NAMES:
        return "batch"
    words = re.split(r"[^a-z0-9]+", key)
    first = words[0] if words else ""
    if first in _VANILLA_NAMES:
        return "vanilla"
    if first in _BATCHNORM_NAMES:
        return "batch"
    return None


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour per label: vanilla-like labels red, BatchNorm-like labels blue, others a palette.

    Labels of one family get successive shades in the order given; other labels take the
    qualitative palette in order (cycling when it runs out).

    Example:
        >>> label_colors(["vanilla", "batchnorm", "layer"])
        {'vanilla': '#d62728', 'batchnorm': '#1f77b4', 'layer': '#2ca02c'}
    """
    out: dict[str, str] = {}
    counts = {"vanilla": 0, "batch": 0, None: 0}
    for label in labels:
        if label in out:
            continue
        fam = _family(str(label))
        shades = {"vanilla": _REDS, "batch": _BLUES, None: _OTHERS}[fam]
        out[label] = shades[counts[fam] % len(shades)]
        counts[fam] += 1
    return out
