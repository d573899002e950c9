"""A scripted Gemini server: the Gemini API (AI Studio) and Vertex AI paths, and an OAuth2
token endpoint, for the gemini engine's tests.

Follows the published references as of 2026-12-01:

- Gemini API reference, ``models.streamGenerateContent`` and ``models.countTokens``
  (https://ai.google.dev/api/generate-content, https://ai.google.dev/api/tokens; API
  version ``v1beta``): ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse``
  with the key in ``x-goog-api-key``, answered as server-sent events whose data is
  one ``GenerateContentResponse`` each (``data: {...}`` and a blank line, CRLF, no
  ``[DONE]``: the body ends after the event with the ``finishReason``).
- Vertex AI REST reference v1, ``projects.locations.publishers.models.
  streamGenerateContent`` / ``countTokens``
  (https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/projects.locations.publishers.models/streamGenerateContent):
  ``POST /v1/projects/{p}/locations/{r}/publishers/google/models/{model}:...`` with
  ``Authorization: Bearer <access token>``.
- Function calling, https://ai.google.dev/gemini-api/docs/function-calling and the
  reference's ``Tool``/``FunctionDeclaration``/``ToolConfig`` (https://ai.google.dev/api/caching#Tool;
  Vertex's ``FunctionDeclaration`` the same): ``tools[].functionDeclarations[]`` ``{name,
  description, parameters | parametersJsonSchema}`` (one or the other, not both; a name of
  letters, digits, ``_ . : -``, at most 64), ``toolConfig.functionCallingConfig`` ``{mode:
  AUTO | ANY | NONE | VALIDATED, allowedFunctionNames}`` (names only with ANY or VALIDATED,
  each a declared function); ``functionCall`` parts ``{name, args}`` in ``model`` turns,
  ``functionResponse`` parts ``{name, response}`` (``response`` an object, the name one
  an earlier ``functionCall`` called) in ``user``/``function`` turns; an answer's
  ``functionCall`` parts come whole, one a part, and its ``finishReason`` is ``STOP``.
  Usage's ``cachedContentTokenCount`` counts the prompt tokens read from a cache.
- Errors, https://ai.google.dev/gemini-api/docs/troubleshooting and Google's API error
  model (https://cloud.google.com/apis/design/errors): ``{"error": {"code", "message",
  "status", "details"}}``; a bad API key is a 400 INVALID_ARGUMENT with an ``ErrorInfo``
  of reason ``API_KEY_INVALID``; a 429 carries a ``RetryInfo`` ``retryDelay``.
- The token endpoint, Google's OAuth 2.0 for server-to-server applications
  (https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
  ``POST /token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and
  ``assertion=<JWT>``; the JWT is RS256-signed by the service account's key, its
  claims ``iss`` (the account's email), ``scope``, ``aud``
  (https://oauth2.googleapis.com/token), ``iat``,
  ``exp`` (at most an hour later). The fake checks the signature against the public
  key of the account (`trust`) and every claim, then issues an access token; the
  Vertex paths take only a token it issued and that has not expired. A refused grant
  is ``400 {"error": "invalid_grant", "error_description"}``.

Every model call is recorded (`calls`: path, query, headers, JSON body), and so is
every token grant (`grants`: the JWT's claims), so tests assert what was sent.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from support.gemini_tool_checks import tools_problem

MODEL = "gemini-2.5-flash"
PROJECT = "test-project"
REGION = "europe-west4"
API_KEY = "AIzaSyFake-test-key-0123456789abcdefghi"  # the shape of a real key: AIza + 35
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The JWT's audience is Google's token endpoint whatever URI the assertion is posted to,
# as the OAuth 2.0 server-to-server guide says and google-auth sends.
AUDIENCE = "https://oauth2.googleapis.com/token"

Event = Mapping[str, Any] | str  # a GenerateContentResponse to encode, or raw `data` text
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def response(
    text: str | None = None,
    *,
    finish: str | None = None,
    usage: tuple[int, int] | None = None,
    thoughts: int | None = None,
    safety: Sequence[Mapping[str, Any]] = (),
    calls: Sequence[Mapping[str, Any]] = (),
    cached: int | None = None,
) -> dict[str, Any]:
    """One ``GenerateContentResponse`` as the stream sends it: `text` in one part, then
    one ``functionCall`` part per entry of `calls` (``{name, args}``), the `finish`
    reason, and `usage` (prompt, candidates tokens) as ``usageMetadata`` with `cached`
    as its ``cachedContentTokenCount`` (part of the prompt's count)."""
    candidate: dict[str, Any] = {"index": 0}
    parts: list[dict[str, Any]] = [] if text is None else [{"text": text}]
    parts += [{"functionCall": dict(call)} for call in calls]
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        candidate["finishReason"] = finish
    if safety:
        candidate["safetyRatings"] = list(safety)
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": MODEL,
        "responseId": "fake-response-1",
    }
    if usage is not None:
        prompt, candidates = usage
        meta = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates + (thoughts or 0),
        }
        if thoughts is not None:
            meta["thoughtsTokenCount"] = thoughts
        if cached is not None:
            meta["cachedContentTokenCount"] = cached
        body["usageMetadata"] = meta
    return body


def google_error(
    code: int, status: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Google's error body (see the module docstring)."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def retry_info(delay: str) -> dict[str, str]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


# Image understanding's types (https://ai.google.dev/gemini-api/docs/image-understanding).
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")


def _inline_data_problem(body: Any) -> str | None:
    """What the API says of an ``inlineData`` part (``Blob``: ``mimeType``, base64
    ``data``) it cannot read, in Google's field-path form; None when all are fine."""
    contents = body.get("contents", []) if isinstance(body, dict) else []
    for i, content in enumerate(contents):
        for j, part in enumerate(content.get("parts", [])):
            blob = part.get("inlineData")
            if blob is None:
                continue
            if blob.get("mimeType") not in _IMAGE_TYPES:
                return f"Unsupported MIME type: {blob.get('mimeType')}"
            try:
                base64.b64decode(blob.get("data") or "", validate=True)
            except ValueError:
                return (
                    f"Invalid value at 'contents[{i}].parts[{j}].inline_data.data' "
                    "(TYPE_BYTES), Base64 decoding failed"
                )
    return None


def _sse(event: Event) -> bytes:
    data = event if isinstance(event, str) else json.dumps(event)
    return f"data: {data}\r\n\r\n".encode()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class Call:
    """One model call the fake received."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGemini:
    """The Gemini API and Vertex AI on 127.0.0.1; its model calls are scripted per test."""

    models: set[str] = field(default_factory=lambda: {MODEL})
    api_key: str = API_KEY
    token_lifetime_s: int = 3600  # the access tokens' expires_in
    calls: list[Call] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)  # claims of accepted JWTs
    url: str = ""
    _trusted: dict[str, tuple[str, rsa.RSAPublicKey]] = field(default_factory=dict)
    _tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry
    _reply: Handler | None = None
    _runner: web.AppRunner | None = None

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def issued(self) -> list[str]:
        """The access tokens issued, in order."""
        return list(self._tokens)

    # ---- scripting -------------------------------------------------------------

    def stream(self, events: Sequence[Event]) -> None:
        """Answer stream calls with these events, then end the body."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = await self._start_stream(request)
            for event in events:
                await resp.write(_sse(event))
            await resp.write_eof()
            return resp

        self._reply = handler

    def stream_then_drop(self, events: Sequence[Event], tail: bytes = b"") -> None:
        """Send these events (and `tail`, raw bytes: half an event), then close the
        connection mid-response, so the chunked body never gets its terminator."""

        async def handler(request: web.Request) -> web.StreamResponse:
            resp = await self._start_stream(request)
            for event in events:
                await resp.write(_sse(event))
            if tail:
                await resp.write(tail)
            assert request.transport is not None
            request.transport.close()
            return resp

        self._reply = handler

    def fail(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer model calls with an HTTP error and a JSON body."""

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(dict(body), status=status, headers=headers)

        self._reply = handler

    def trust(self, client_email: str, key_id: str, public_key: rsa.RSAPublicKey) -> None:
        """Accept JWT assertions of this service account signed by its key."""
        self._trusted[client_email] = (key_id, public_key)

    def expire_tokens(self) -> None:
        """Every access token issued so far is refused from now on (as if expired)."""
        self._tokens = dict.fromkeys(self._tokens, 0.0)

    # ---- serving ---------------------------------------------------------------

    async def _gemini_api(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        if request.headers.get("x-goog-api-key") != self.api_key:
            return web.json_response(
                google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "API key not valid. Please pass a valid API key.",
                    [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": {"service": "generativelanguage.googleapis.com"},
                        }
                    ],
                ),
                status=400,
            )
        model, _, method = request.match_info["call"].partition(":")
        if model not in self.models:
            return web.json_response(
                google_error(
                    404,
                    "NOT_FOUND",
                    f"models/{model} is not found for API version v1beta, or is not "
                    f"supported for {method}. Call ListModels to see the list of available "
                    "models and their supported methods.",
                ),
                status=404,
            )
        return await self._answer(request, method, call)

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        call = await self._record(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or self._tokens.get(token, 0.0) <= time.time():
            return web.json_response(
                google_error(
                    401,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                ),
                status=401,
            )
        info = request.match_info
        model, _, method = info["call"].partition(":")
        if model not in self.models:
            name = f"projects/{info['project']}/locations/{info['region']}"
            return web.json_response(
                google_error(
                    404,
                    "NOT_FOUND",
                    f"Publisher Model `{name}/publishers/google/models/{model}` not found.",
                ),
                status=404,
            )
        return await self._answer(request, method, call)

    async def _answer(self, request: web.Request, method: str, call: Call) -> web.StreamResponse:
        if method == "countTokens":
            contents = call.body.get("contents", []) if isinstance(call.body, dict) else []
            words = sum(len(str(p.get("text", "")).split()) for c in contents for p in c["parts"])
            return web.json_response({"totalTokens": words})
        if method != "streamGenerateContent":
            return web.json_response(
                google_error(404, "NOT_FOUND", f"method {method} not served"), status=404
            )
        if request.query.get("alt") != "sse":  # without it the answer is one JSON array
            return web.json_response(
                google_error(400, "INVALID_ARGUMENT", "the fake serves alt=sse only"), status=400
            )
        problem = _inline_data_problem(call.body) or tools_problem(call.body)
        if problem:
            return web.json_response(google_error(400, "INVALID_ARGUMENT", problem), status=400)
        if self._reply is None:
            return web.json_response(
                google_error(500, "INTERNAL", "no script for this test"), status=500
            )
        return await self._reply(request)

    async def _record(self, request: web.Request) -> Call:
        text = await request.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        call = Call(request.path, dict(request.query), dict(request.headers), body)
        self.calls.append(call)
        return call

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._refused("unsupported_grant_type", "Invalid grant_type.")
        problem, claims = self._check_assertion(str(form.get("assertion", "")))
        if problem is not None:
            return self._refused("invalid_grant", problem)
        self.grants.append(claims)
        token = f"ya29.fake-access-token-{len(self._tokens) + 1}"
        self._tokens[token] = time.time() + self.token_lifetime_s
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        )

    def _check_assertion(self, assertion: str) -> tuple[str | None, dict[str, Any]]:
        """Why the JWT is refused (None: it is good), and its claims."""
        try:
            header_b64, claims_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return "Invalid JWT: not a signed JWT.", {}
        if header.get("alg") != "RS256":
            return f"Invalid JWT: alg {header.get('alg')!r}, not RS256.", claims
        trusted = self._trusted.get(str(claims.get("iss")))
        if trusted is None:
            return "Invalid JWT Signature.", claims  # Google says so for an unknown account
        key_id, public_key = trusted
        if header.get("kid") != key_id:
            return "Invalid JWT Signature.", claims
        try:
            public_key.verify(
                signature,
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return "Invalid JWT Signature.", claims
        now = time.time()
        if claims.get("aud") != AUDIENCE:
            return f"Invalid JWT: aud {claims.get('aud')!r}, not {AUDIENCE}.", claims
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: the cloud-platform scope was not asked for.", claims
        iat, exp = claims.get("iat"), claims.get("exp")
        if not (isinstance(iat, int) and isinstance(exp, int)):
            return "Invalid JWT: iat and exp must be numbers.", claims
        if iat > now + 60 or exp <= now or exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes).", claims
        return None, claims

    @staticmethod
    def _refused(error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=400)

    @staticmethod
    async def _start_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self._gemini_api)
        app.router.add_post(
            "/v1/projects/{project}/locations/{region}/publishers/google/models/{call}",
            self._vertex,
        )
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(
            app, shutdown_timeout=1.0, access_log=None, handler_cancellation=True
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def write_service_account(
    directory: Path, fake: FakeGemini, *, trusted: bool = True, name: str = "modelyard-test"
) -> Path:
    """A service-account key file with a freshly generated RSA key whose token URI is the
    fake's; the fake trusts the key unless `trusted` is False. Returns its path."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"{name}@{PROJECT}.iam.gserviceaccount.com"
    key_id = f"{name}-key-1"
    if trusted:
        fake.trust(email, key_id, key.public_key())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": fake.token_uri,
        "universe_domain": "googleapis.com",
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(info))
    return path
