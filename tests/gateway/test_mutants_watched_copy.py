"""The gateway's watched copies at the staleness limit (killing mutmut's survivor in
`gateway.watched_copy.WatchedCopy.check_fresh`: `>` → `>=`)."""

from __future__ import annotations

import time

import pytest

from modelyard.gateway.route_view import RouteView
from modelyard_client.errors import BackendUnavailable


def test_a_copy_stale_for_exactly_the_limit_still_routes_and_a_moment_more_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = RouteView(stale_after_s=10.0)
    view.stale_since, view.stale_reason = 1000.0, "the watch failed"
    now = [1010.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the module reads time.monotonic
    view.check_fresh()  # stale for 10 s, not longer than 10 s: still routed on
    now[0] = 1010.25
    with pytest.raises(BackendUnavailable) as refused:
        view.check_fresh()
    assert refused.value.message == (
        "the gateway's copy of the route table has been stale for 10s (the watch failed); "
        "no request is routed on it until it resynchronises"
    )
