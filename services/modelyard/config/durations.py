"""Durations as operators write them (``500ms``, ``30s``, ``5m``, ``1h``, ``90d``, ``1m30s``)."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

DURATION_HINT = "use e.g. 500ms, 30s, 5m, 1h"


def parse_duration(text: str) -> float:
    """Seconds in `text`, or ValueError.

    A bare number is refused on purpose: whether ``30`` means seconds or
    milliseconds is exactly the mistake a unit prevents.
    """
    compact = text.strip()
    if not _WHOLE.fullmatch(compact):
        raise ValueError(f"'{text}' is not a duration ({DURATION_HINT})")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(compact))
