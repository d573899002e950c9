"""Models an Ollama daemon has pulled, through the official `ollama` client.

One pass is ``GET /api/tags`` (what is installed), ``POST /api/show`` per model
(capabilities, ``model_info`` with ``<architecture>.context_length``, details)
and ``GET /api/ps`` (which models are loaded right now). A model whose
``/api/show`` answers with an error is left out and named in `errors`. If the
daemon stops answering part way, the pass stops there: the snapshot holds the
models described so far and is marked incomplete, so nothing still installed
is taken for removed. Each entry is `modelyard.backends.ollama.model_entry`'s,
the one the Ollama engine announces too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import httpx
import ollama
import pydantic

from modelyard.backends.ollama.model_entry import ollama_entry
from modelyard.discovery.source import SourceSnapshot
from modelyard_client.errors import BackendUnavailable
from modelyard_client.scrub import upstream_text

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"

# The daemon stopped answering (refused, reset, timed out): later calls would fail too.
_GONE = (ConnectionError, httpx.TransportError)
# The daemon answered, but not with what the documented API promises.
_BAD_ANSWER = (ollama.ResponseError, httpx.HTTPError, pydantic.ValidationError, ValueError)


class OllamaSource:
    """Discovery over one Ollama daemon; catalog ids are ``<backend>/<name:tag>``."""

    def __init__(
        self, host: str = DEFAULT_HOST, *, backend: str = "ollama", timeout_s: float = 10.0
    ) -> None:
        self.name = backend  # unique in the configuration; what Discover(provider=) names
        self.backend = backend
        self._host = host
        self._timeout_s = timeout_s

    async def discover(self) -> SourceSnapshot:
        async with ollama.AsyncClient(host=self._host, timeout=self._timeout_s) as client:
            return await self._discover(client)

    async def _discover(self, client: ollama.AsyncClient) -> SourceSnapshot:
        try:
            listing = await client.list()
        except (*_GONE, *_BAD_ANSWER) as exc:
            raise BackendUnavailable(
                f"ollama at {self._host}: /api/tags failed: {_describe(exc)}"
            ) from exc

        errors: list[str] = []
        shown: list[tuple[ollama.ListResponse.Model, ollama.ShowResponse]] = []
        for index, listed in enumerate(listing.models):
            if not listed.model:
                errors.append("ollama: /api/tags listed a model without a name; skipped")
                continue
            try:
                shown.append((listed, await client.show(listed.model)))
            except _GONE as exc:
                errors.append(
                    f"ollama: stopped answering at '{listed.model}' (/api/show): "
                    f"{_describe(exc)}; {len(listing.models) - index} model(s) not described"
                )
                return self._snapshot(shown, {}, errors, complete=False)
            except _BAD_ANSWER as exc:
                errors.append(f"ollama: /api/show for '{listed.model}' failed: {_describe(exc)}")

        try:
            running = {m.model: m for m in (await client.ps()).models if m.model}
        except (*_GONE, *_BAD_ANSWER) as exc:
            # Only the "loaded" metadata depends on it: the list itself is whole.
            errors.append(f"ollama: /api/ps failed, load state unknown: {_describe(exc)}")
            running = {}
        return self._snapshot(shown, running, errors, complete=True)

    def _snapshot(
        self,
        shown: list[tuple[ollama.ListResponse.Model, ollama.ShowResponse]],
        running: Mapping[str, ollama.ProcessResponse.Model],
        errors: list[str],
        *,
        complete: bool,
    ) -> SourceSnapshot:
        entries = tuple(
            ollama_entry(
                listed, show, running.get(str(listed.model)), host=self._host, backend=self.backend
            )
            for listed, show in shown
        )
        for error in errors:
            log.warning("%s", error)
        return SourceSnapshot(self.name, entries, tuple(errors), complete)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, pydantic.ValidationError):
        return f"unexpected answer ({exc.error_count()} field error(s))"
    if isinstance(exc, json.JSONDecodeError):
        return "answer is not JSON"
    return upstream_text(str(exc)) or type(exc).__name__  # it may quote a URL's password
