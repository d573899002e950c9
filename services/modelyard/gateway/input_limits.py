"""The streams one caller's key may hold open on a gateway (`security.input_limits`).

The other input limits are checked where the request is read: input bytes and
`max_tokens` in `validation.check_request`, the messages of a chat and the
models of a Compare in `request_limits.check_bounds`, the items of a batch in
`batch.generate_batch`; the slow reader's cut is the server's, on every stream
(`server/slow_readers.py`). This one needs state: how many `GenerateStream`
calls each key has open here, right now.

The key is the one the rate limits count by (`ratelimit.plan.Scope.caller`):
the principal's key id when the call is authenticated, else the fingerprint of
the key it presented. A call with authentication off that presents no key has
no key to count by, and only the gateway's own bound (`gateway.max_in_flight`)
holds it; with authentication on, every call has one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from modelyard.ratelimit.plan import ANONYMOUS, Scope
from modelyard.security.principal import current_principal
from modelyard_client.errors import TooManyStreams


class OpenStreams:
    """The open streams of each key on this gateway, each at most `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open_for(self, scope_id: str) -> int:
        """How many streams `scope_id` (a key id or a key's fingerprint) holds now."""
        return self._open.get(scope_id, 0)

    @contextmanager
    def holding(self, api_key: str | None) -> Iterator[None]:
        """One stream of the calling key, for as long as the block runs; `TooManyStreams`
        when the key already holds `limit`, before anything else is done for it."""
        scope = Scope.caller(api_key, current_principal())
        if scope.id == ANONYMOUS:
            yield
            return
        held = self._open.get(scope.id, 0)
        if held >= self.limit:
            raise TooManyStreams(
                f"{scope.label} already holds {held} open streams; the limit is {self.limit} "
                "(security.input_limits.max_streams_per_key)",
                key=scope.id,
                limit=self.limit,
            )
        self._open[scope.id] = held + 1
        try:
            yield
        finally:
            left = self._open[scope.id] - 1
            if left:
                self._open[scope.id] = left
            else:
                del self._open[scope.id]  # no entry per key ever seen: the map stays small
