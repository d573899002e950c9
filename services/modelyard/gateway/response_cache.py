"""The response cache: an exact repeat of a deterministic request, answered without a model.

The key is the canonical request: what the backend would be sent, less the
request id — the resolved catalog model id, the input, and the generation
parameters with `max_tokens` after the gateway's default — serialized
deterministically and hashed (sha256) with the model's catalog `version`, so a
model replaced under the same id is asked again. A call naming an alias is keyed by the
model the alias's route points at, so moving the route moves the key.

Never cached (neither read nor written):
- a call with `no_cache`;
- a call naming no model (the task route or the selector chooses), or an
  alias whose route carries a split (an A/B test, a canary: the arm is drawn
  per call and its outcome is reported);
- a call with a `conversation_id` (its history changes what the model is sent);
- unless `deterministic_only` is off, a call without temperature 0 or a seed.

The request id, conversation id, user and fallback models are not in the key.
An answer is stored only once its stream ended of itself with a finish reason
(LENGTH too: `max_tokens` is in the key; not CONTENT_FILTER: the provider's
moderation cut it, not the request), and
only when the keyed model gave it — an answer a fallback model gave, or one
whose alias moved between the lookup and the call, is not. An error, a
truncated or cut stream, and a call the caller cancelled are never stored. The
stored value is the answer's pieces, finish reason, token counts and model id;
a hit replays the same pieces with `cached` set on the first chunk and
`cost_usd` 0.

A hit makes no upstream call, so it spends no rate-limit budget (the model's,
the provider's or the API key's: the limits guard upstream capacity and
spend), takes no in-flight slot and is no split's outcome. It still passes
`check_request` first, so bad input is refused as without a cache; a model
the gateway's catalog copy does not hold is not cached (the core refuses it as
ever). A copy gone stale is not refused on a hit: nothing is routed on it.
Identical misses running at once each call the model (no coalescing).

Entries live in memory (a bounded LRU with a TTL, one per gateway), in one
host's SQLite file shared by its gateway processes (`up --workers N`:
`shared_answers`), or, when a Redis URL is given, in Redis under `KEY_PREFIX`,
shared by every gateway. A
Redis failure never fails a call: the call goes to the model, the outage is
logged once when it begins and once when it ends, and Redis is left alone for
`retry_interval_s` after a failure so calls do not each wait out a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from modelyard.gateway.core import GatewayCore, response_of
from modelyard.gateway.deadline import CallDeadline
from modelyard.gateway.validation import check_request
from modelyard.meters.instruments import Instrument
from modelyard.ratelimit.redis_store import redacted
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import backend_pb2, common_pb2, gateway_pb2

log = logging.getLogger(__name__)

# Bump the version when the key's or the value's form changes: old entries are then unread.
KEY_PREFIX = "modelyard:cache:v1:"
REDIS_TIMEOUT_S = 0.25  # one GET or SET; beyond it the call goes to the model
REDIS_RETRY_INTERVAL_S = 1.0
# A tool-call answer is not stored: the calls are the caller's to run, each time.
_NOT_STORED = frozenset(
    {
        common_pb2.FINISH_REASON_UNSPECIFIED,
        common_pb2.FINISH_REASON_CONTENT_FILTER,
        common_pb2.FINISH_REASON_TOOL_CALLS,
    }
)
# Any Redis failure, also a refused command or a reply we cannot read: the cache is optional.
_REDIS_FAILURE = (redis.exceptions.RedisError, OSError, TimeoutError)

Chunks = AsyncGenerator[gateway_pb2.GenerateChunk, None]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A finished answer as stored: its pieces' texts in order, the finish and token counts."""

    model_id: str
    texts: tuple[str, ...]
    finish_reason: common_pb2.FinishReason.ValueType
    input_tokens: int
    output_tokens: int

    def chunks(self, request_id: str) -> Iterator[gateway_pb2.GenerateChunk]:
        """The answer replayed: the same pieces, `cached` on the first, usage on the last."""
        last = len(self.texts) - 1
        for i, text in enumerate(self.texts):
            chunk = gateway_pb2.GenerateChunk(text=text)
            if i == 0:
                chunk.model_id = self.model_id
                chunk.request_id = request_id
                chunk.cached = True
            if i == last:
                chunk.finish_reason = self.finish_reason
                # A hit costs nothing; the counts say what the answer is.
                chunk.usage.input_tokens = self.input_tokens
                chunk.usage.output_tokens = self.output_tokens
            yield chunk

    def to_json(self) -> bytes:
        return json.dumps(
            [self.model_id, self.texts, self.finish_reason, self.input_tokens, self.output_tokens],
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CachedAnswer:
        """`ValueError` when `raw` is not one."""
        value = json.loads(raw)
        if not (isinstance(value, list) and len(value) == 5):
            raise ValueError("not a cached answer")
        model_id, texts, finish, input_tokens, output_tokens = value
        if not (
            isinstance(model_id, str)
            and isinstance(texts, list)
            and texts
            and all(isinstance(t, str) for t in texts)
            and all(_uint32(n) for n in (finish, input_tokens, output_tokens))
        ):
            raise ValueError("not a cached answer")
        finish_reason = common_pb2.FinishReason.ValueType(finish)
        return cls(model_id, tuple(texts), finish_reason, input_tokens, output_tokens)


def _uint32(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**32


class AnswerStore(Protocol):
    """Where cached answers live; `get` and `put` never raise for the store's own failures."""

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryAnswerStore:
    """A bounded LRU in this process: the least recently used entry goes first; an entry
    past its TTL is a miss. `clock` is monotonic seconds (injectable for tests)."""

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, answer = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        self._entries[key] = (self._clock() + ttl_s, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def close(self) -> None:
        self._entries.clear()


class RedisAnswerStore:
    """Answers in Redis, shared by every gateway; a failure is a miss (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = REDIS_TIMEOUT_S,
        retry_interval_s: float = REDIS_RETRY_INTERVAL_S,
        key_prefix: str = KEY_PREFIX,
        max_connections: int = 64,
    ) -> None:
        self.url = redacted(url)
        self.timeout_s = timeout_s
        self.retry_interval_s = retry_interval_s
        self.key_prefix = key_prefix
        # As the rate limiter's store: no retry loop inside the client, one immediate
        # retry so a pooled connection that died with a Redis restart is replaced.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,  # waiting for a connection counts against the operation's timeout
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = aioredis.Redis(connection_pool=self._pool)
        self._down_since: float | None = None  # monotonic; None while Redis answers
        self._next_attempt = 0.0
        self._unreadable = 0  # entries read but not understood, since the last log
        self._unreadable_logged_at = -math.inf

    @property
    def reachable(self) -> bool:
        """False from a failed operation until one succeeds again."""
        return self._down_since is None

    async def get(self, key: str) -> CachedAnswer | None:
        raw = await self._run(self._client.get, self.key_prefix + key)
        if raw is None:
            return None
        try:
            return CachedAnswer.from_json(raw)
        except ValueError:  # json's errors are ValueErrors too; the next finish overwrites it
            self._log_unreadable()
            return None

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        await self._run(self._client.set, self.key_prefix + key, answer.to_json(), px=ttl_ms)

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()

    async def _run(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The command's reply; None when Redis failed or is left alone after a failure."""
        if self._down_since is not None and time.monotonic() < self._next_attempt:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await command(*args, **kwargs)
        except _REDIS_FAILURE as exc:
            self._went_down(exc)
            return None
        self._came_back()
        return reply

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._next_attempt = now + self.retry_interval_s
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "response cache Redis at %s failed (%s: %s); calls go to the models until "
                "it answers",
                self.url,
                type(exc).__name__,
                exc,
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning(
                "response cache Redis at %s answers again after %.1fs",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None

    def _log_unreadable(self) -> None:
        self._unreadable += 1
        now = time.monotonic()
        if now - self._unreadable_logged_at >= 10:
            log.warning(
                "response cache Redis at %s: %d entries under %s could not be read; "
                "treated as misses",
                self.url,
                self._unreadable,
                self.key_prefix,
            )
            self._unreadable, self._unreadable_logged_at = 0, now


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A cacheable call's key, and the model whose answer alone may be stored under it."""

    digest: str
    model_id: str


class ResponseCache:
    """Which calls are cached, under which key, in which store."""

    def __init__(self, store: AnswerStore, ttl_s: float, *, deterministic_only: bool = True):
        self.store = store
        self.ttl_s = ttl_s
        self.deterministic_only = deterministic_only

    @classmethod
    def open(
        cls,
        *,
        ttl_s: float,
        max_entries: int,
        redis_url: str | None = None,
        shared_file: Path | None = None,
        deterministic_only: bool = True,
    ) -> ResponseCache:
        """In Redis when `redis_url` is set, else in the SQLite file `shared_file` when set
        (one host's gateway processes, `shared_answers`), else in this process's memory."""
        from modelyard.gateway.shared_answers import SharedAnswerStore  # it reads CachedAnswer

        store: AnswerStore
        if redis_url:
            store = RedisAnswerStore(redis_url)
        elif shared_file is not None:
            store = SharedAnswerStore(shared_file, max_entries)
        else:
            store = MemoryAnswerStore(max_entries)
        return cls(store, ttl_s, deterministic_only=deterministic_only)

    def key(self, request: gateway_pb2.GenerateRequest, core: GatewayCore) -> CacheKey | None:
        """The call's key; None when the call is not cached (the module doc's list)."""
        if request.no_cache or request.conversation_id or not request.model:
            return None
        if self.deterministic_only and not deterministic(request.params):
            return None
        if core.routes is not None and request.model in core.routes.splits:
            return None
        model_id = core.chain.resolve(request.model)
        try:
            version = core.catalog.get(model_id).version
        except ModelNotFound:
            return None
        params = common_pb2.GenerationParams()
        params.CopyFrom(request.params)
        params.max_tokens = params.max_tokens or core.settings.default_max_tokens
        # What the backend is sent, less the request id.
        canonical = backend_pb2.InferRequest(model_id=model_id, input=request.input, params=params)
        digest = hashlib.sha256(f"{len(version)}:{version}:".encode())
        digest.update(canonical.SerializeToString(deterministic=True))
        return CacheKey(digest.hexdigest(), model_id)

    async def close(self) -> None:
        await self.store.close()


def deterministic(params: common_pb2.GenerationParams) -> bool:
    """Temperature set and 0, or a seed set."""
    return (params.HasField("temperature") and params.temperature == 0) or params.HasField("seed")


_HIT = (("modelyard.cache.result", "hit"),)
_MISS = (("modelyard.cache.result", "miss"),)


class CachedGateway:
    """`GatewayCore`'s `generate` and `generate_stream`, through a `ResponseCache`."""

    def __init__(
        self, core: GatewayCore, cache: ResponseCache, lookups: Instrument | None = None
    ) -> None:
        """`lookups`: each lookup counted there by result (``modelyard.cache.lookups``)."""
        self.core = core
        self.cache = cache
        self._lookups = lookups

    async def generate(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
    ) -> gateway_pb2.GenerateResponse:
        started = time.perf_counter()
        return await response_of(
            self.generate_stream(request, deadline, api_key, streamed=False), started
        )

    async def generate_stream(
        self,
        request: gateway_pb2.GenerateRequest,
        deadline: CallDeadline | None = None,
        api_key: str | None = None,
        *,
        streamed: bool = True,
        checked: bool = False,
    ) -> Chunks:
        """`checked`: `check_request` passed already (`GuardedGateway` ran it)."""
        if not checked:  # refused as without a cache, before a lookup
            check_request(request, self.core.settings)
        key = self.cache.key(request, self.core)
        if key is not None:
            answer = await self.cache.store.get(key.digest)
            if self._lookups is not None:
                self._lookups.add(1, _HIT if answer is not None else _MISS)
            if answer is not None:
                for chunk in answer.chunks(request.request_id or uuid.uuid4().hex):
                    yield chunk
                return
        chunks = self.core.generate_stream(
            request, deadline, api_key, streamed=streamed, checked=True
        )
        if key is not None:
            chunks = self._storing(chunks, key)
        async with aclosing(chunks):
            async for chunk in chunks:
                yield chunk

    async def _storing(self, chunks: Chunks, key: CacheKey) -> Chunks:
        """`chunks`, stored once they ended of themselves with a finish the keyed model gave."""
        texts: list[str] = []
        model_id = ""
        last = gateway_pb2.GenerateChunk()
        has_output = False  # speech, segments, images, tensors: not what an entry holds
        async with aclosing(chunks):
            async for chunk in chunks:
                if not texts:
                    model_id = chunk.model_id
                texts.append(chunk.text)
                has_output = has_output or chunk.HasField("output")
                last = chunk
                yield chunk
        # Reached only when the stream ended without an error and without being closed.
        if model_id != key.model_id or last.finish_reason in _NOT_STORED:
            return
        if has_output or last.dropped_params:  # an entry keeps text and token counts only
            return
        answer = CachedAnswer(
            model_id,
            tuple(texts),
            last.finish_reason,
            last.usage.input_tokens,
            last.usage.output_tokens,
        )
        await self.cache.store.put(key.digest, answer, self.cache.ttl_s)
