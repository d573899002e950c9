"""Servicers that answer UNIMPLEMENTED for every RPC they do not define yet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")


def with_unimplemented(servicer_cls: Callable[..., T], *args: Any) -> T:
    """Instantiate a servicer whose missing RPCs raise `NotImplementedError`.

    The generated base classes declare every RPC abstract; the interceptor
    turns `NotImplementedError` into UNIMPLEMENTED naming the RPC, so an RPC of
    the contract that is not built yet answers honestly instead of failing to
    start the server.
    """
    missing: frozenset[str] = getattr(servicer_cls, "__abstractmethods__", frozenset())

    def not_built(self: object, request: object, context: object) -> None:
        raise NotImplementedError

    base = cast(type, servicer_cls)
    filled = type(base.__name__, (base,), dict.fromkeys(missing, not_built))
    return cast(T, filled(*args))
