"""An upstream's ``Retry-After`` (seconds or an HTTP date) reaches the caller as RetryInfo.

OpenAI sends it with a 429 (rate limit) and a 503 (overloaded, "Slow Down");
RFC 9110, section 10.2.3, allows delay-seconds or an HTTP date. A date is
counted from the response's own ``Date``, so a clock difference between the
upstream and the gateway does not count.
"""

from __future__ import annotations

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream, StackFor, openai_error, request
from support.grpc_trailers import retry_delay_s, trailers

from modelyard.backends.openai_compat.upstream import retry_after_s
from modelyard_client.errors import (
    RETRY_AFTER_MS_KEY,
    BackendUnavailable,
    RateLimited,
    error_from_rpc,
)

SENT = "Wed, 21 Oct 2015 07:28:00 GMT"  # the upstream's Date header
SENT_TS = 1445412480.0  # SENT as a POSIX timestamp

RATE_LIMIT = openai_error(
    "Rate limit reached for requests", "requests", "rate_limit_exceeded"
)  # OpenAI: 429
OVERLOADED = openai_error(
    "The engine is currently overloaded, please try again later", "server_error"
)  # OpenAI: 503


@pytest.mark.parametrize(
    ("status", "headers", "cls", "delay_s"),
    [
        (429, {"Retry-After": "20"}, RateLimited, 20.0),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:45 GMT", "Date": SENT}, RateLimited, 45.0),
        (503, {"Retry-After": "30"}, BackendUnavailable, 30.0),
        (
            503,
            {"Retry-After": "Wed, 21 Oct 2015 07:30:00 GMT", "Date": SENT},
            BackendUnavailable,
            120.0,
        ),
    ],
    ids=["429-seconds", "429-date", "503-seconds", "503-date"],
)
async def test_retry_after_travels_as_retry_info(
    upstream: FakeUpstream,
    stack_for: StackFor,
    status: int,
    headers: dict[str, str],
    cls: type[RateLimited | BackendUnavailable],
    delay_s: float,
) -> None:
    upstream.fail(status, RATE_LIMIT if status == 429 else OVERLOADED, headers=headers)
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    err = info.value
    assert retry_delay_s(err) == delay_s
    assert trailers(err)[RETRY_AFTER_MS_KEY] == str(round(delay_s * 1000))
    rebuilt = error_from_rpc(err)
    assert type(rebuilt) is cls
    assert rebuilt.retry_after_s == delay_s
    assert (err.details() or "").endswith(f"; retry after {delay_s:.3f}s")


async def test_a_503_without_retry_after_sends_no_retry_info(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(503, OVERLOADED)
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert retry_delay_s(info.value) is None
    assert RETRY_AFTER_MS_KEY not in trailers(info.value)
    rebuilt = error_from_rpc(info.value)
    assert type(rebuilt) is BackendUnavailable
    assert rebuilt.retry_after_s is None


async def test_a_429_without_retry_after_waits_one_second(
    upstream: FakeUpstream, stack_for: StackFor
) -> None:
    upstream.fail(429, RATE_LIMIT)
    clients = await stack_for(upstream.url)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(request(), timeout=10)
    assert retry_delay_s(info.value) == 1.0


@pytest.mark.parametrize(
    ("headers", "delay_s"),
    [
        ({"Retry-After": "120"}, 120.0),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),  # not RFC 9110's integer, but meant plainly
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT", "Date": SENT}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),  # no Date: this host's clock
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 -0000"}, 30.0),  # -0000: UTC too
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT", "Date": "yesterday"}, 30.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT", "Date": SENT}, 0.0),  # past: now
        ({}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    headers: dict[str, str], delay_s: float | None
) -> None:
    assert retry_after_s(headers, now=SENT_TS) == delay_s
