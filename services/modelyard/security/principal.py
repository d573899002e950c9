"""Who is calling: the principal an authenticated call runs as.

The server interceptor authenticates each call (its API key, or its mTLS
client certificate) and sets the principal for the call's task
(`running_as`); every stage after it (scopes, budgets, audit, per-key
limits) reads it with `current_principal`, over gRPC and the HTTP edges
alike, the way the trace context travels. Never the key itself: a principal
names its key by id.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

# What a principal may do. A call needs one of its RPC's scopes (`security.scopes`).
GENERATE = "generate"  # the data plane: Generate, GenerateStream, BatchGenerate, Compare, Embed
ADMIN = "admin"  # the control plane: registry writes, swaps, A/B tests, keys, audit
BACKEND = "backend"  # a service identity: backends announcing themselves, the gateway calling them
SCOPES = (GENERATE, ADMIN, BACKEND)


@dataclass(frozen=True, slots=True)
class Principal:
    """One caller: its key's id (never the key), owner, team, rights and own limits."""

    key_id: str
    owner: str = ""
    team: str = ""
    scopes: frozenset[str] = frozenset()
    # The model ids and aliases it may use; empty: every one.
    models: frozenset[str] = frozenset()
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None

    def may(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


# Authentication off (the embedded default on loopback): every call runs as this.
OPEN = Principal(key_id="open", scopes=frozenset(SCOPES))

_current: ContextVar[Principal | None] = ContextVar("modelyard_principal", default=None)


def current_principal() -> Principal | None:
    """The principal of the call this task serves; None outside any call."""
    return _current.get()


class running_as:  # used as a function: `with running_as(principal):`
    """Run the enclosed call as `principal` (and every task it starts). A class, not a
    generator, since every call of the server pays for it."""

    __slots__ = ("_principal", "_token")

    def __init__(self, principal: Principal) -> None:
        self._principal = principal

    def __enter__(self) -> Principal:
        self._token = _current.set(self._principal)
        return self._principal

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
