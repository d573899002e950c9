"""The plug-in protocol: a backend kind written outside modelyard.

A plug-in is a `BaseProvider` subclass in any installed Python distribution,
registered under the ``modelyard.engines`` entry-point group::

    [project.entry-points."modelyard.engines"]
    echo = "modelyard_echo_provider:EchoProvider"

and named by ``kind:`` in the configuration::

    model_system:
      backends:
        echo1: {kind: echo, options: {prefix: ">> "}}

modelyard builds one provider per configured backend, awaits `initialize`
once at start, and serves every model it lists as ``<backend name>/<model>``.
Plug-in authors see only the plain types in this module, never a protobuf.
See docs/plugins.md.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, Awaitable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Literal

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseProvider",
    "Finish",
    "GenerationParams",
    "Message",
    "TextResult",
    "installed_plugins",
]

ENTRY_POINT_GROUP = "modelyard.engines"


@dataclass(frozen=True)
class Message:
    """One chat message. A plain-text request arrives as a single ``user`` message."""

    role: str  # "system", "user", "assistant" or "tool"
    content: str
    name: str = ""


@dataclass(frozen=True)
class GenerationParams:
    """What the caller asked for. None: the caller left it to the model's default.

    The gateway always sets `max_tokens` (the caller's value or its own default).
    Applying the limits and `stop` is the provider's job; say so with
    ``Finish("length")`` when `max_tokens` cut the answer short.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Finish:
    """Optional last item of a streamed answer: why it ended and what it cost.

    Counts left None are taken from `BaseProvider.count_tokens`, else estimated.
    """

    reason: Literal["stop", "length"] = "stop"
    input_tokens: int | None = None
    output_tokens: int | None = None


# What `generate_text` may return: the whole text, a coroutine giving it, or an
# async iterator of text pieces (an ``async def`` with ``yield``), optionally
# ending with a `Finish`.
TextResult = str | Awaitable[str] | AsyncIterable[str | Finish]


class BaseProvider(abc.ABC):
    """Subclass this to add a backend kind.

    An instance serves one configured backend: `name` is its key in
    `model_system.backends`, `options` its ``options:`` mapping (strings), and
    `api_key` / `endpoint` its keys of those names, when given. Do slow or
    network work in `initialize`; override `__init__` only to check options
    (keep its signature and call ``super().__init__`` first): an exception there
    stops modelyard before it starts, naming the backend. Raising an
    exception from `modelyard_client.errors` (`RateLimited`, `InvalidRequest`, ...)
    chooses the status the caller gets; any other exception reaches the caller
    as a `ProviderError` naming the plug-in.
    """

    def __init__(
        self,
        name: str,
        options: Mapping[str, str],
        api_key: str | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.api_key = api_key
        self.endpoint = endpoint

    async def initialize(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Connect, authenticate, check options: once, before any other call.

        An exception here leaves the backend UNAVAILABLE with the exception as
        the reason; the rest of modelyard still starts.
        """

    def list_models(self) -> list[str]:
        """The provider's own names of the models it serves (called after `initialize`).

        Not called when the configuration lists ``models:`` for this backend.
        """
        return []

    @abc.abstractmethod
    def generate_text(
        self, model: str, messages: Sequence[Message], params: GenerationParams
    ) -> TextResult:
        """Answer `messages` with `model` (a name from `list_models`).

        Return the text (`str`, or ``async def`` returning it), or stream it by
        writing an ``async def`` that yields pieces of text, optionally ending
        with a `Finish`.
        """

    def count_tokens(self, model: str, text: str) -> int | None:
        """Tokens `text` is for `model`, when the provider can tell; None: estimate.

        Used for usage figures (and so rate limits and cost) unless a `Finish`
        already gave them.
        """
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release connections; called once at shutdown."""


def installed_plugins() -> dict[str, EntryPoint]:
    """Every installed plug-in by kind name (entry points in `ENTRY_POINT_GROUP`).

    Read afresh on each call, so a distribution installed meanwhile is seen; for
    two distributions registering one name, the first on `sys.path` wins.
    """
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found
