"""The dashboard's two routes on the HTTP edge: ``GET /dashboard``, the page (static, no
build step: `modelyard/dashboard/dashboard.html`, shipped as package data), and
``GET /dashboard/data``, the JSON the page polls (`modelyard.dashboard.data`).

The data is guarded like the admin RPCs: with keys required, the caller's key
(``Authorization: Bearer`` or ``x-api-key``; the page takes it from the URL fragment
``#key=...`` or from a field it shows when refused) must hold the admin scope: no key
or an unknown one is 401, another key 403, in the OpenAI API's error shape. On the open
embedded default (keys not required on loopback) it is open, as every call is. The page
itself holds no data and is served to anyone; it is refused, as every call, while the
server drains. Reads of the data write no audit row: an open page polls every 3 s, and
it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Any

from aiohttp import web

from modelyard.edges.openai_wire import error_body, http_status
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.security.authn import Authenticator
from modelyard.security.principal import ADMIN, OPEN, running_as
from modelyard.server.interceptor import CallGate
from modelyard_client.errors import ModelyardError, PermissionDenied

PAGE = "/dashboard"
DATA = "/dashboard/data"

# One reading of what the dashboard shows (`modelyard.dashboard.data.dashboard_data`).
Reading = Callable[[], Awaitable[dict[str, Any]]]


@cache
def page_html() -> bytes:
    """The page, read once from the package."""
    return resources.files("modelyard.dashboard").joinpath("dashboard.html").read_bytes()


class DashboardRoutes:
    """The page and its data, on `app`; `authenticator` None: keys not required."""

    def __init__(self, gate: CallGate, authenticator: Authenticator | None, read: Reading) -> None:
        self.gate = gate
        self.authenticator = authenticator
        self.read = read

    def add_to(self, app: web.Application) -> None:
        app.router.add_get(PAGE, self.page)
        app.router.add_get(DATA, self.data)

    async def page(self, http: web.Request) -> web.StreamResponse:
        try:
            self.gate.check()
        except ModelyardError as err:
            return _error(err)
        return web.Response(
            body=page_html(),
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def data(self, http: web.Request) -> web.StreamResponse:
        try:
            self.gate.check()
            principal = OPEN
            if self.authenticator is not None:
                principal = self.authenticator.authenticate(
                    api_key_from_metadata(http.headers.items())
                )
                if not principal.may(ADMIN):
                    raise PermissionDenied(
                        f"key '{principal.key_id}' may not read the dashboard: "
                        f"it needs the {ADMIN} scope"
                    )
            with running_as(principal):
                reading = await self.read()
        except ModelyardError as err:
            return _error(err)
        return web.Response(
            body=json.dumps(reading, separators=(",", ":")).encode(),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )


def _error(err: ModelyardError) -> web.Response:
    return web.Response(
        status=http_status(err)[0],
        body=json.dumps(error_body(err), separators=(",", ":")).encode(),
        content_type="application/json",
    )
