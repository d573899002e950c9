"""Which swaps `ListSwaps` answers with: newest first, filtered, at most a limit."""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.route_keys import route_key
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import hotswap_pb2

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def listed(
    swaps: Sequence[hotswap_pb2.SwapStatus],
    request: hotswap_pb2.ListSwapsRequest,
    ended: frozenset[int],
) -> list[hotswap_pb2.SwapStatus]:
    """The swaps of `swaps` (oldest first, as started) that `request` asks for, newest first;
    `ended`: the phases a swap has ended in. `InvalidRequest` naming the field for a bad
    alias or task type, both of them, or a limit over `MAX_LIMIT`."""
    if request.limit > MAX_LIMIT:
        raise InvalidRequest(
            f"limit {request.limit} is over {MAX_LIMIT}: ask for fewer", field="limit"
        )
    key = (
        route_key(request.alias, request.task_type) if request.alias or request.task_type else None
    )
    out: list[hotswap_pb2.SwapStatus] = []
    limit = request.limit or DEFAULT_LIMIT
    for swap in reversed(swaps):
        if request.running_only and swap.phase in ended:
            continue
        if key is not None and route_key(swap.alias, swap.task_type) != key:
            continue
        out.append(swap)
        if len(out) == limit:
            break
    return out
