"""An OpenAI-compatible upstream, as the openai_compat engine needs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelyard.backends.admission import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE


@dataclass(frozen=True)
class ProviderEndpoint:
    """One OpenAI-compatible upstream.

    `models` empty means "ask the upstream's /models at start". At most
    `max_concurrency` chat calls run against it at once and `max_queue` more
    wait for a turn; any beyond are refused (`modelyard.backends.admission`).
    """

    name: str
    base_url: str  # up to and including /v1
    api_key: str = field(default="", repr=False)  # the key at start; see `current_key`
    models: tuple[str, ...] = ()
    timeout_s: float = 120.0
    extra_headers: dict[str, str] = field(default_factory=dict)
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE
    # The key as it is now (`modelyard.security.secrets.ProviderKey.value`): asked on
    # every request, so a key rotated by SIGHUP is sent from the next request on.
    current_key: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    # Which OpenAI-wire dialect it speaks (`params.DIALECTS`): the hosted kind ("openai",
    # "mistral", "openrouter") or "openai_compat" (generic); "" reads it from `name`.
    dialect: str = ""

    def key(self) -> str:
        """The key to send now: the rotated one when there is one, else `api_key`."""
        return (self.current_key() if self.current_key is not None else "") or self.api_key

    def headers(self) -> dict[str, str]:
        """What a request to this upstream sends now: the extra headers, then the key."""
        headers = dict(self.extra_headers)
        key = self.key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers


def normalise_base_url(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both become ``.../v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"
