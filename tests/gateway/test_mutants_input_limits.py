"""The open streams a key holds on a gateway (killing mutmut's survivors in
`gateway.input_limits.OpenStreams.open_for`, docs/testing.md, the sixth session, which
no test reached): the count of the calling key's open streams while they run, and 0
for a key holding none, before and after.

On `OpenStreams` itself, the key counted by its fingerprint (no principal: no call).
"""

from __future__ import annotations

from modelyard.gateway.input_limits import OpenStreams
from modelyard.ratelimit.plan import Scope


def test_open_for_counts_the_keys_open_streams_and_is_zero_for_a_key_with_none() -> None:
    streams = OpenStreams(limit=3)
    mine, other = Scope.caller("sk-mine-0001", None).id, Scope.caller("sk-other-0002", None).id
    assert streams.open_for(mine) == 0
    with streams.holding("sk-mine-0001"):
        assert streams.open_for(mine) == 1
        with streams.holding("sk-mine-0001"):
            assert streams.open_for(mine) == 2
            assert streams.open_for(other) == 0
        assert streams.open_for(mine) == 1
    assert streams.open_for(mine) == 0
