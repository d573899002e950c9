"""Whether a number is a known value of a proto enum: the one check for every boundary.

Proto3 enums are open: a caller may send any int32 in an enum field, and the
generated code keeps it. The catalog and selection build bitmasks from
capabilities and modalities (bit `v` for value `v`), so an unknown value would
overflow a mask or silently match nothing. The registry refuses one in every
enum field of an entry it stores, task analysis in every enum field of a task,
and the candidate builder skips an entry stored with one before these checks.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.descriptor import EnumDescriptor

from modelyard_client.errors import InvalidRequest


def is_known(enum: EnumDescriptor, value: int) -> bool:
    """Whether `value` is one of `enum`'s declared values (UNSPECIFIED, 0, included)."""
    return value in enum.values_by_number


def value_name(enum: EnumDescriptor, value: int) -> str:
    """The declared name of `value`, or ``unknown <Enum> value N``: never raises."""
    known = enum.values_by_number.get(value)
    return known.name if known is not None else f"unknown {enum.name} value {value}"


def unknown_value(enum: EnumDescriptor, values: Iterable[int]) -> tuple[int, int] | None:
    """(index, value) of the first of `values` that `enum` does not declare, or None."""
    for i, value in enumerate(values):
        if not is_known(enum, value):
            return i, value
    return None


def check_known(enum: EnumDescriptor, value: int, field: str, subject: str = "") -> None:
    """`InvalidRequest` naming `field` when `value` is not a value of `enum`."""
    if not is_known(enum, value):
        known = ", ".join(f"{v.number} ({v.name})" for v in enum.values)
        prefix = f"{subject}: " if subject else ""
        raise InvalidRequest(
            f"{prefix}{field} {value} is not a {enum.name} value; known: {known}", field=field
        )


def check_all_known(
    enum: EnumDescriptor, values: Iterable[int], field: str, subject: str = ""
) -> None:
    """`check_known` for each of a repeated field's `values`, naming ``field[i]``."""
    found = unknown_value(enum, values)
    if found is not None:
        i, value = found
        check_known(enum, value, f"{field}[{i}]", subject)
