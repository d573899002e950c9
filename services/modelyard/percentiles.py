"""The one percentile rule of modelyard's figures: nearest rank.

The live windows (`gateway/performance.py`), the A/B and canary arms
(`hotswap/arm_stats.py`) and the usage records' SQL (`security/usage.py`, the same
rule in SQL: the ceil(n * q / 100)-th value) all report percentiles this way, so a
p95 means the same thing wherever it is shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of `ordered` (sorted), nearest rank; 0.0 when empty."""
    if not ordered:
        return 0.0
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]
