"""Value types the schema shares: how a key's annotation says what it accepts."""

from __future__ import annotations

from typing import Annotated

from modelyard.config.convert import Duration, Range
from modelyard_client.v1 import common_pb2

# Positive durations written with a unit (``30s``), read as seconds.
Seconds = Annotated[float, Duration(), Range(min=0, above=True)]
SecondsOrZero = Annotated[float, Duration(), Range(min=0)]  # 0s: none
# Keys ending in _ms are integers of milliseconds.
Millis = Annotated[int, Range(min=1)]
MillisOrZero = Annotated[int, Range(min=0)]
Fraction = Annotated[float, Range(min=0, max=1)]
Count = Annotated[int, Range(min=1)]

# The proto's Capability enum, as written in the file: CAPABILITY_JSON_OUTPUT -> json_output.
CAPABILITIES: tuple[str, ...] = tuple(
    name.removeprefix("CAPABILITY_").lower()
    for name, number in common_pb2.Capability.items()
    if number != common_pb2.CAPABILITY_UNSPECIFIED
)
