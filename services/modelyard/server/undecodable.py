"""Requests whose bytes are not the message their RPC takes: refused, counted, logged seldom.

The interceptor hands gRPC no request deserializer, so a request arrives as
its bytes and is parsed here, inside the call: an undecodable one (corrupt
wire format, a string that is not UTF-8, nesting deeper than the parser goes)
becomes `InvalidRequest` with a plain message, where a deserializer raising
inside grpc's runtime is answered UNKNOWN naming an internal class and logs a
traceback per request. A hostile or broken client can send thousands a
second, so the log gets one line at the first and then at most one per
interval, with the count.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.message import DecodeError
from grpc.aio import ServicerContext

from modelyard_client.errors import InvalidRequest

log = logging.getLogger(__name__)

Deserializer = Callable[[bytes], Any]
Ctx = ServicerContext[Any, Any]

# Often enough to notice a broken client, seldom enough that a flood of bad
# requests cannot flood the log.
LOG_INTERVAL_S = 10.0


class UndecodableRequests:
    """Parses requests; counts the undecodable ones per RPC and logs them seldom.

    One log line at the first, then at most one per `interval_s`: a line names
    each RPC with its count since the previous line, and the latest caller;
    requests refused within the interval are logged together when it ends.
    """

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._unlogged: Counter[str] = Counter()
        self._latest_peer = ""
        self._last_line_at = -math.inf  # event-loop time
        self._flush_due = False

    def parse(self, raw: bytes, deserializer: Deserializer, rpc_name: str, context: Ctx) -> Any:
        """The request message `raw` holds; `InvalidRequest` when it is not one.

        `deserializer` is the RPC's generated ``<Message>.FromString``: a good
        message costs exactly that call, as when gRPC made it.
        """
        try:
            return deserializer(raw)
        except DecodeError:
            self.refused(rpc_name, context.peer())
            raise InvalidRequest(
                f"the request is not a valid {request_type(rpc_name)} message"
            ) from None

    def refused(self, rpc_name: str, peer: str) -> None:
        """Count one refused request of `rpc_name` from `peer`."""
        self._unlogged[rpc_name] += 1
        self._latest_peer = peer
        if self._flush_due:
            return
        loop = asyncio.get_running_loop()
        wait_s = self._last_line_at + self._interval_s - loop.time()
        if wait_s <= 0:
            self._flush()
        else:
            self._flush_due = True
            loop.call_later(wait_s, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(self._unlogged.items()))
        log.warning(
            "refused %d undecodable request(s) (%s), latest from %s; next report in %gs at most",
            self._unlogged.total(),
            counts,
            self._latest_peer or "an unknown peer",
            self._interval_s,
        )
        self._unlogged.clear()
        self._last_line_at = asyncio.get_running_loop().time()


@functools.cache
def request_type(rpc_name: str) -> str:
    """The full name of the message `rpc_name` ("modelyard.v1.GatewayService/Generate") takes."""
    method = descriptor_pool.Default().FindMethodByName(rpc_name.replace("/", "."))
    return str(method.input_type.full_name)
