"""The audit log: one append-only row per modelyard call, written off the request path.

Who (the key's id; "open" with authentication off), what (the RPC, the model
asked for and the model that served), when, tokens in and out, cost, outcome
(the status code's name and the error's reason, never its message, which may
quote a prompt or an upstream's answer) and latency. Never a prompt or an
answer: a row has no column that could hold one.

How a call's row is made: the server interceptor opens an `AuditRecord` for
the call (`AuditLog.call`, a context manager that also sets it in a context
variable, so every task the call starts sees the same record), notes the
caller once authenticated (`note_caller`) and the model its request names
(`note_request`); the gateway's core adds what each finished answer used
(`note_served`, where the reservation is settled) — Compare and batch items
add to the same record. When the call ends the record gets its outcome and
latency and is put in memory; `AuditLog.run` writes what waits in one
transaction every `flush_interval`, in a worker thread, so a call never
waits for the disk. A write that fails keeps its rows for the next one. At
most `max_pending` rows wait: past that the oldest are dropped, counted and
logged, rather than the calls slowed.

`AuditStore` keeps the rows through `modelyard.storage`: DATA_DIR/audit.sqlite3,
or the ``audit`` schema on the PostgreSQL server `MODELYARD_DATABASE_URL` names,
which gateway replicas then share (`usage.py` sums the rows: the audit row is the
usage record). On both engines triggers refuse every UPDATE and every DELETE (on
PostgreSQL every TRUNCATE too). The one deletion is the store's own retention
(`prune`): rows older than the retention, removed in one transaction that lifts
the DELETE trigger and puts it back before it commits, so no other connection
ever sees the log without it.

Each row also says when the first piece of an answer came (`note_first_piece`)
and how many model attempts were sent to a backend (`note_attempt`): the
gateway calls them where it already knows, a context variable read and an
attribute write each; with the log off, the read alone.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from modelyard.security.principal import Principal
from modelyard.storage import DatabaseUrl, StoreSchema, open_store
from modelyard.storage.dialect import PerEngine
from modelyard_client.errors import ModelyardError

log = logging.getLogger(__name__)

MAX_QUERY_ROWS = 10_000
DEFAULT_QUERY_ROWS = 100
PRUNE_EVERY_S = 3600.0
# Longest text a row keeps of a model name list (a Compare's 64 models).
_MODELS_CHARS = 2048

_TABLE = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    key_id TEXT NOT NULL,
    rpc TEXT NOT NULL,
    model_requested TEXT NOT NULL,
    model_served TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    code TEXT NOT NULL,
    reason TEXT NOT NULL,
    latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_key_at ON audit (key_id, at);
"""
_SQLITE_NO_DELETE = """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE is refused'); END"""
# Version 1 is the file as it was before migrations were kept: it opens unchanged.
_APPEND_ONLY = PerEngine(
    shared=_TABLE,
    sqlite=(
        """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE is refused'); END""",
        _SQLITE_NO_DELETE,
    ),
    postgresql=(
        """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'the audit log is append-only: ' || TG_OP || ' is refused';
END $$""",
        "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
        "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
        "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
    ),
)
_FIRST_PIECE_AND_ATTEMPTS = """
ALTER TABLE audit ADD COLUMN ttft_ms REAL NOT NULL DEFAULT 0;
ALTER TABLE audit ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
"""
SCHEMA = StoreSchema("audit", (_APPEND_ONLY, _FIRST_PIECE_AND_ATTEMPTS))
# Retention's deletion: the DELETE trigger lifted, and put back, inside its transaction.
_LIFT_NO_DELETE = PerEngine(
    sqlite=("DROP TRIGGER audit_no_delete",),
    postgresql=("ALTER TABLE audit DISABLE TRIGGER audit_no_delete",),
)
_RESTORE_NO_DELETE = PerEngine(
    sqlite=(_SQLITE_NO_DELETE,),
    postgresql=("ALTER TABLE audit ENABLE TRIGGER audit_no_delete",),
)
_COLUMNS = (
    "at, key_id, rpc, model_requested, model_served, tokens_in, tokens_out, "
    "cost_usd, code, reason, latency_ms, ttft_ms, attempts"
)
_ROW_PLACES = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"  # one per column
# Rows one INSERT holds: 13 values each, well within SQLite's 32,766 variables
# (and PostgreSQL's 65,535).
_ROWS_PER_INSERT = 1000


@dataclass(slots=True)
class AuditRecord:
    """One call, as the audit log keeps it; filled while the call runs."""

    rpc: str  # "modelyard.v1.GatewayService/Generate"
    at: float  # epoch seconds, when the call started
    started: float = 0.0  # `time.perf_counter` then: what latency and ttft count from
    key_id: str = ""
    model_requested: str = ""
    model_served: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    code: str = "OK"
    reason: str = ""
    latency_ms: float = 0.0
    ttft_ms: float = 0.0  # 0: no first piece (yet)
    attempts: int = 0

    def row(self) -> tuple[Any, ...]:
        return (
            self.at,
            self.key_id,
            self.rpc,
            self.model_requested[:_MODELS_CHARS],
            self.model_served[:_MODELS_CHARS],
            self.tokens_in,
            self.tokens_out,
            self.cost_usd,
            self.code,
            self.reason,
            self.latency_ms,
            self.ttft_ms,
            self.attempts,
        )


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A row read back: `AuditRecord`'s fields and its place in the log."""

    seq: int
    at: float
    key_id: str
    rpc: str
    model_requested: str
    model_served: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    code: str
    reason: str
    latency_ms: float
    ttft_ms: float
    attempts: int


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which rows to read: every filter set must match; newest first, at most `limit`."""

    key_id: str = ""
    rpc: str = ""  # a method name ("Generate") or a full one
    model: str = ""  # asked for or served
    outcome: str = ""  # a code's name ("OK") or a reason ("MODEL_NOT_FOUND")
    since: float | None = None  # epoch seconds
    until: float | None = None
    limit: int = DEFAULT_QUERY_ROWS


class AuditStore:
    """The audit table: append, query, prune by age; nothing else can change a row."""

    def __init__(self, where: Path | DatabaseUrl) -> None:
        """`where`: the SQLite file, or the PostgreSQL server (its ``audit`` schema)."""
        self.where = where
        self._db = open_store(where, SCHEMA)

    @property
    def engine(self) -> str:
        return self._db.engine

    def append(self, rows: list[tuple[Any, ...]]) -> None:
        """Write `rows` (`AuditRecord.row`) in one transaction.

        As few statements as can hold them (`_ROWS_PER_INSERT` rows each), not one per
        row: SQLite runs each statement with the GIL released, and a writer thread
        that takes the GIL back once per row makes the event loop hand it over as
        often. Up to `_ROWS_PER_INSERT` rows are one statement, its own transaction.
        """
        if not rows:
            return
        if len(rows) <= _ROWS_PER_INSERT:
            self._insert(rows)
            return
        with self._db.write():
            for start in range(0, len(rows), _ROWS_PER_INSERT):
                self._insert(rows[start : start + _ROWS_PER_INSERT])

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        values = ",".join(itertools.repeat(_ROW_PLACES, len(rows)))
        self._db.execute(
            f"INSERT INTO audit ({_COLUMNS}) VALUES {values}",
            tuple(itertools.chain.from_iterable(rows)),
        )

    def query(self, query: AuditQuery) -> tuple[list[AuditRow], bool]:
        """The rows `query` selects, newest first, and whether more matched than its limit."""
        where, args = row_filter(query.key_id, query.model, query.since, query.until)
        if query.rpc:
            where.append("(rpc = ? OR rpc LIKE ?)" if "/" in query.rpc else "rpc LIKE ?")
            args.extend((query.rpc, query.rpc) if "/" in query.rpc else (f"%/{query.rpc}",))
        if query.outcome:
            where.append("(code = ? OR reason = ?)")
            args.extend((query.outcome.upper(), query.outcome.upper()))
        limit = max(1, min(query.limit or DEFAULT_QUERY_ROWS, MAX_QUERY_ROWS))
        sql = f"SELECT seq, {_COLUMNS} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        found = self._db.execute(sql, (*args, limit + 1))
        return [AuditRow(*r) for r in found[:limit]], len(found) > limit

    def read(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows one SELECT of the audit table returns (`usage.py`'s sums)."""
        return self._db.execute(sql, args)

    def prune(self, older_than: float) -> int:
        """Remove the rows from before `older_than` (epoch seconds); how many went.

        The retention's deletion, the only one: the DELETE trigger is lifted and
        put back inside the transaction, which holds the store's write lock (and,
        on PostgreSQL, the table's: ALTER TABLE) throughout, so no other
        connection ever meets the log without it.
        """
        with self._db.write():
            self._db.execute_own(_LIFT_NO_DELETE)
            counted = self._db.fetchone("SELECT COUNT(*) FROM audit WHERE at < ?", (older_than,))
            self._db.execute("DELETE FROM audit WHERE at < ?", (older_than,))
            self._db.execute_own(_RESTORE_NO_DELETE)
        return int(counted[0]) if counted else 0

    def close(self) -> None:
        self._db.close()


def row_filter(
    key_id: str, model: str, since: float | None, until: float | None
) -> tuple[list[str], list[Any]]:
    """The WHERE terms (joined by AND) and their arguments selecting rows of `key_id`,
    naming `model` (asked for or served), that started in [`since`, `until`)."""
    where: list[str] = []
    args: list[Any] = []
    if key_id:
        where.append("key_id = ?")
        args.append(key_id)
    if model:
        # A batch's or a Compare's names are comma-separated: match one of them.
        where.append("(',' || model_requested || ',' || model_served || ',') LIKE ? ESCAPE '\\'")
        args.append(f"%,{_like_literal(model)},%")
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if until is not None:
        where.append("at < ?")
        args.append(until)
    return where, args


def _like_literal(text: str) -> str:
    """`text` matched literally by ``LIKE … ESCAPE '\\'``: its own % and _ escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditLog:
    """Records every call (`call`) and writes the rows in batches (`run`)."""

    def __init__(
        self,
        store: AuditStore,
        *,
        flush_interval_s: float = 0.2,
        max_pending: int = 100_000,
        retention_s: float | None = None,
    ) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.retention_s = retention_s
        self._pending: collections.deque[AuditRecord] = collections.deque(maxlen=max_pending)
        self.dropped = 0  # rows lost because the writer fell `max_pending` behind
        self._flushing = asyncio.Lock()

    def call(self, rpc: str) -> AuditedCall:
        """The context of one call of `rpc`: its record, appended when the call ends."""
        return AuditedCall(self, rpc)

    def append(self, record: AuditRecord) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("the audit log's writer is behind: %d rows dropped", self.dropped)
        self._pending.append(record)

    async def flush(self) -> int:
        """Write every row waiting now; how many. When the write fails the rows wait
        again, first in line (within `max_pending`), for the next flush."""
        async with self._flushing:
            records = [self._pending.popleft() for _ in range(len(self._pending))]
            if records:
                try:
                    await asyncio.to_thread(self.store.append, [r.row() for r in records])
                except Exception:  # not a cancel: the worker thread still writes those
                    self._pending.extendleft(reversed(records))
                    raise
            return len(records)

    async def run(self) -> None:
        """Until cancelled: write what waits every `flush_interval_s`; prune hourly."""
        next_prune = 0.0
        while True:
            try:
                if self.retention_s is not None and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY_S
                    gone = await asyncio.to_thread(self.store.prune, time.time() - self.retention_s)
                    if gone:
                        log.info(
                            "audit retention: %d rows older than %.0fs pruned",
                            gone,
                            self.retention_s,
                        )
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a full disk must not end the log: try again next time
                log.exception("could not write the audit log; will retry")
            await asyncio.sleep(self.flush_interval_s)

    async def close(self) -> None:
        """Write what is left and close the file."""
        await self.flush()
        self.store.close()


_current: ContextVar[AuditRecord | None] = ContextVar("modelyard_audit_record", default=None)


class AuditedCall:
    """One call's audit context (`AuditLog.call`): a class, not a generator, since
    every call of the server pays for it."""

    __slots__ = ("_log", "_record", "_token")

    def __init__(self, audit: AuditLog, rpc: str) -> None:
        self._log = audit
        self._record = AuditRecord(rpc=rpc, at=time.time(), started=time.perf_counter())

    def __enter__(self) -> AuditRecord:
        self._token = _current.set(self._record)
        return self._record

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._token)
        record = self._record
        record.latency_ms = (time.perf_counter() - record.started) * 1000
        record.code, record.reason = outcome_of(exc)
        self._log.append(record)


def outcome_of(exc: BaseException | None) -> tuple[str, str]:
    """The status code's name and the reason a call ending with `exc` answers."""
    if exc is None:
        return "OK", ""
    if isinstance(exc, ModelyardError):
        return exc.code.name, exc.reason
    if isinstance(exc, NotImplementedError):
        return "UNIMPLEMENTED", "UNIMPLEMENTED"
    if not isinstance(exc, Exception):  # CancelledError, GeneratorExit: the call was dropped
        return "CANCELLED", ""
    return "INTERNAL", "INTERNAL"


def current_record() -> AuditRecord | None:
    """The audit record of the call this task serves; None outside one (or audit off)."""
    return _current.get()


def note_caller(principal: Principal) -> Principal:
    """Note who the call runs as (its key's id); returns `principal`, to wrap a call in."""
    record = _current.get()
    if record is not None:
        record.key_id = principal.key_id
    return principal


def note_request(request: Message) -> None:
    """Note the model(s) a request names: `model`, `model_id`, `models`, `entry.id`."""
    record = _current.get()
    if record is not None:
        record.model_requested = requested_models(request)


def note_served(model_id: str, tokens_in: int, tokens_out: int, cost_usd: float) -> None:
    """Add one finished answer (a batch item, a Compare's model) to the call's record."""
    record = _current.get()
    if record is None:
        return
    if not record.model_served:  # the common case: a call's one answer
        record.model_served = model_id
    elif model_id and model_id not in record.model_served.split(","):
        record.model_served = f"{record.model_served},{model_id}"
    record.tokens_in += tokens_in
    record.tokens_out += tokens_out
    record.cost_usd += cost_usd


def note_attempt() -> None:
    """A model attempt is being sent to a backend (a retry, a fallback, a hedge: each one)."""
    record = _current.get()
    if record is not None:
        record.attempts += 1


def note_first_piece() -> None:
    """A backend's answer sent its first piece: the call's first one sets its ttft."""
    record = _current.get()
    if record is not None and not record.ttft_ms:
        record.ttft_ms = (time.perf_counter() - record.started) * 1000


# The fields that name a model (or an alias) in the contract's requests; a registry
# request's `id` is a model's too.
_MODEL_FIELDS = ("model", "model_id", "alias", "for_model", "target_model_id")
_REGISTRY_PROTO = "modelyard/v1/registry.proto"


def requested_models(request: Message) -> str:
    """The model names a request holds, comma-separated; "" when it names none."""
    fields = _model_fields(request.DESCRIPTOR)
    if len(fields) == 1 and fields[0][1] == "text":  # most requests: one `model` field
        text: str = _field(request, fields[0][0])
        return text
    names: list[str] = []
    for name, kind in fields:
        value = _field(request, name)
        if kind == "text":
            if value:
                names.append(value)
        elif kind == "texts":
            names.extend(value)
        elif kind == "items":  # BatchGenerate's requests
            names.extend(item.model for item in value if item.model)
        elif request.HasField(name):  # RegisterModel's entry
            names.append(value.id)
    return ",".join(dict.fromkeys(names))


@functools.cache
def _model_fields(descriptor: Descriptor) -> tuple[tuple[str, str], ...]:
    """Which fields of a request type name models, and how: worked out once per type."""
    wanted = (*_MODEL_FIELDS, "id") if descriptor.file.name == _REGISTRY_PROTO else _MODEL_FIELDS
    found: list[tuple[str, str]] = []
    for field in descriptor.fields:
        child = field.message_type
        if field.name in wanted and child is None and not field.is_repeated:
            found.append((field.name, "text"))
        elif field.name == "models" and child is None and field.is_repeated:
            found.append((field.name, "texts"))
        elif field.name == "requests" and child is not None and "model" in child.fields_by_name:
            found.append((field.name, "items"))
        elif field.name in ("model", "entry") and child and "id" in child.fields_by_name:
            found.append((field.name, "entry"))
    return tuple(found)


def _field(message: Message, name: str) -> Any:
    """A field the descriptor says `message` has (the base class declares none)."""
    return getattr(message, name)
