"""Alert messages delivered to a webhook (`monitoring.alert_webhook`), Slack-compatible.

The body is a Slack incoming-webhook message with one legacy "secondary attachment"
(Slack API reference, "Reference: Secondary message attachments",
https://api.slack.com/reference/messaging/attachments, as published in 2025):
``{"text": "...", "attachments": [{"fallback", "color": "danger"|"good", "title",
"text", "fields": [{"title", "value", "short": true}], "footer", "ts"}]}``; any
receiver that takes JSON can read it. A 2xx answer is delivery (Slack answers
``200 ok``).

`Webhook.send` never waits: it puts the message on this process's queue (at most
`MAX_QUEUED`; beyond, the message is dropped and logged) and one worker posts them in
order, so an incident's firing always goes before its resolution. A message that
meets a non-2xx answer, a connection error or `timeout` is tried again after a
full-jitter exponential backoff (a random wait up to ``min(MAX_BACKOFF_S,
BASE_BACKOFF_S * 2**n)`` after the n-th failure; a 429's ``Retry-After`` when it is
longer, up to `MAX_BACKOFF_S`), up to `max_attempts` tries, then dropped and logged;
the resolution of an incident whose firing was dropped is not sent either.

The URL is a secret (Slack's hook URLs are bearer credentials): its path and query are
registered with `modelyard_client.scrub`, so no log or error shows them, and the
module's own log lines name the scheme and host only. Messages still queued when the
stack stops are dropped, and counted in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from modelyard.gateway.alerts import AlertMessage, Rule
from modelyard.meters.instruments import Instrument
from modelyard_client.scrub import register_secret

log = logging.getLogger(__name__)

MAX_QUEUED = 1000
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
_COLORS = {"firing": "danger", "resolved": "good"}


def slack_body(message: AlertMessage) -> dict[str, Any]:
    """The Slack incoming-webhook JSON of `message` (see the module docstring)."""
    b = message.breach
    fields = [
        {"title": "State", "value": message.state, "short": True},
        {"title": "Rule", "value": b.rule, "short": True},
        {"title": _SCOPE_TITLE[b.rule], "value": b.scope, "short": True},
        {"title": "Threshold", "value": f"{b.threshold:g}", "short": True},
        {"title": "Value", "value": f"{b.value:g}", "short": True},
    ]
    if b.samples:
        fields.append({"title": "Attempts in window", "value": str(b.samples), "short": True})
    text = message.text()
    return {
        "text": text,
        "attachments": [
            {
                "fallback": text,
                "color": _COLORS[message.state],
                "title": f"{b.rule} {message.state}: {b.scope}",
                "text": b.detail if message.state == "firing" else message.now,
                "fields": fields,
                "footer": "modelyard gateway",
                "ts": int(message.at),
            }
        ],
    }


_SCOPE_TITLE: dict[Rule, str] = {
    "error_rate": "Model",
    "latency_p95": "Model",
    "cost_per_hour": "Model",
    "budget": "Budget",
}


class Webhook:
    """Posts alert messages to `url` in order, retried (see the module docstring)."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        max_attempts: int,
        *,
        base_backoff_s: float = BASE_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        jitter: Callable[[], float] = random.random,
        meter: Instrument | None = None,
    ) -> None:
        parts = urlsplit(url)
        for secret in (parts.path, parts.query):
            register_secret(secret)  # short ones (a bare "/") hide nothing and are skipped
        self.url = url
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # what logs name
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._jitter = jitter
        self.meter = meter  # ``modelyard.alerts``: each message delivered or dropped
        self._queue: asyncio.Queue[AlertMessage] = asyncio.Queue(MAX_QUEUED)
        self._undelivered: set[tuple[Rule, str]] = set()  # firings dropped
        self.delivered = 0  # messages a 2xx answered
        self.failed_attempts = 0  # posts answered non-2xx or not at all
        self.dropped = 0  # messages given up on, or not queued

    def __repr__(self) -> str:
        return f"Webhook({self.where!r})"

    def send(self, message: AlertMessage) -> None:
        """Queue `message`; never waits."""
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self._drop(message)
            log.warning(
                "alert webhook %s: %d messages queued, dropped: %s",
                self.where,
                MAX_QUEUED,
                message.text(),
            )

    async def run(self) -> None:
        """Deliver queued messages until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    message = await self._queue.get()
                    await self._deliver(session, message)
        finally:
            if left := self._queue.qsize():
                log.warning("alert webhook %s: %d messages not sent at stop", self.where, left)

    async def _deliver(self, session: aiohttp.ClientSession, message: AlertMessage) -> None:
        if message.state == "resolved" and message.key in self._undelivered:
            self._undelivered.discard(message.key)
            self._drop(message)
            log.warning(
                "alert webhook %s: not sent, its firing was not: %s", self.where, message.text()
            )
            return
        body = slack_body(message)
        problem = ""
        for attempt in range(self.max_attempts):
            wait_s = 0.0
            try:
                async with session.post(self.url, json=body) as answer:
                    if 200 <= answer.status < 300:
                        self.delivered += 1
                        if self.meter is not None:
                            self.meter.add(1, message.attributes("delivered"))
                        self._undelivered.discard(message.key)
                        return
                    problem = f"HTTP {answer.status}"
                    wait_s = _retry_after_s(answer.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.failed_attempts += 1
            if attempt + 1 < self.max_attempts:
                ceiling = min(self.max_backoff_s, self.base_backoff_s * 2**attempt)
                await asyncio.sleep(min(self.max_backoff_s, max(wait_s, ceiling * self._jitter())))
        self._drop(message)
        if message.state == "firing":
            self._undelivered.add(message.key)
        log.warning(
            "alert webhook %s: dropped after %d attempts (last: %s): %s",
            self.where,
            self.max_attempts,
            problem,
            message.text(),
        )

    def _drop(self, message: AlertMessage) -> None:
        self.dropped += 1
        if self.meter is not None:
            self.meter.add(1, message.attributes("dropped"))


def _retry_after_s(value: str | None) -> float:
    """A ``Retry-After`` of seconds (a date is not honoured: the backoff applies)."""
    if value is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(value))
    return 0.0
