"""The ``security:`` section: who may call, what they may spend, what leaves the gateway.

One dataclass per concern, each read by the module that enforces it
(`modelyard.security` and the gateway's stages).
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from modelyard.config.convert import NonEmpty, OneOf, Range, Secret, Url
from modelyard.config.values import Count, Seconds

# The PII types redaction finds (`security.pii`), by their configuration name; a
# placeholder names its type in upper case ("[EMAIL_1]").
EMAIL, PHONE, CARD, IBAN, IPV4, IPV6, SECRET = (
    "email",
    "phone",
    "card",
    "iban",
    "ipv4",
    "ipv6",
    "secret",
)
BUILT_IN_TYPES: tuple[str, ...] = (EMAIL, PHONE, CARD, IBAN, IPV4, IPV6, SECRET)


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Gateway API keys and admin scopes (`modelyard.security.keys`, `.authn`, `.scopes`).

    Keys are required whenever a server listens beyond loopback, unless
    `allow_unauthenticated` (logged as a WARNING at start); on loopback only when
    `required`. The secrets come from the environment only (``${VAR}``); each one
    the file leaves out is read from its variable (`modelyard.security.auth_env`).
    """

    required: bool = False  # keys even on loopback
    allow_unauthenticated: bool = False  # no keys even beyond loopback: loudly logged
    # The bootstrap key: ADMIN scope, creates the others (MODELYARD_ADMIN_KEY).
    admin_key: Annotated[str, Secret()] | None = field(default=None, repr=False)
    # What the services present to each other: BACKEND scope (MODELYARD_SERVICE_KEY).
    service_key: Annotated[str, Secret()] | None = field(default=None, repr=False)
    # The HMAC secret keys are stored under (MODELYARD_KEY_SECRET); absent: a random
    # one the server writes to DATA_DIR/key-secret (mode 0600) on first start.
    key_secret: Annotated[str, Secret()] | None = field(default=None, repr=False)
    # The key store; default DATA_DIR/keys.sqlite3. Gateway replicas share one.
    store: Path | None = None
    # How often each server looks for key changes in the store (a revocation is
    # seen within this on every replica sharing it).
    refresh_interval: Seconds = 0.25
    # With it, a change is also published on this Redis and applied at once.
    redis_url: Annotated[str, Url(("redis", "rediss"))] | None = None


@dataclass(frozen=True, kw_only=True)
class SecretsConfig:
    """Provider keys: where they are read from (`modelyard.security.secrets`).

    A secret field (``api_key: "${OPENAI_API_KEY}"``) names a variable; its
    value comes from `file` when the file holds it, else from the environment
    (`modelyard.config.secrets_file`). SIGHUP re-reads both, and every engine
    uses the new value from its next call. Every value read is scrubbed from
    errors, logs and spans (`modelyard_client.scrub`).
    """

    # NAME=value lines or a YAML mapping of variable names to values, mounted by the operator.
    file: Path | None = None
    # Set by the loader, not a key: secret key path (``backends.openai.api_key``) → the
    # variable it names (``OPENAI_API_KEY``), so the value can be read again on SIGHUP.
    references: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), init=False, repr=False, compare=False
    )


# A limit of `security.budgets`: > 0, or absent for none.
BudgetLimit = Annotated[float, Range(min=0, above=True)]


@dataclass(frozen=True, kw_only=True)
class TeamBudget:
    """What all of one team's keys may use together; each limit absent: none."""

    requests_per_minute: BudgetLimit | None = None
    tokens_per_minute: BudgetLimit | None = None
    daily_usd: BudgetLimit | None = None  # US dollars per UTC calendar day
    monthly_usd: BudgetLimit | None = None  # US dollars per UTC calendar month


@dataclass(frozen=True, kw_only=True)
class KeyBudget:
    """The spend of each key that has no budget of its own (its record's
    daily_budget_usd / monthly_budget_usd); its rates default to `rate_limits.per_key`."""

    daily_usd: BudgetLimit | None = None
    monthly_usd: BudgetLimit | None = None


@dataclass(frozen=True, kw_only=True)
class BudgetsConfig:
    """Per key and per team request, token and spend budgets (`modelyard.ratelimit.spend`,
    enforced by `modelyard.gateway.limits`).

    Spend is reserved before a call at its maximum cost and settled after with
    what it cost; a budget that cannot take a request refuses it with
    BUDGET_EXCEEDED before any backend call. `alert_at`: fractions of a budget
    whose crossing is reported once per budget and window (a WARNING log line,
    a span event, `ModelLimits.alerts`).
    """

    teams: Mapping[str, TeamBudget] = field(default_factory=lambda: types.MappingProxyType({}))
    per_key: KeyBudget = field(default_factory=KeyBudget)
    alert_at: tuple[Annotated[float, Range(min=0, max=1, above=True)], ...] = (0.5, 0.8, 1.0)

    def violations(self) -> Iterator[tuple[str, str]]:
        if list(self.alert_at) != sorted(set(self.alert_at)):
            yield "alert_at", "must be increasing, each fraction once (e.g. [0.5, 0.8, 1.0])"


TlsMode = Literal["plaintext", "tls", "mtls"]


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """mTLS between services and towards clients (`modelyard.security.tls`).

    ``plaintext`` (the default: the embedded stack on 127.0.0.1 answers the
    README's commands as before), ``tls`` (the server proves itself, clients
    need no certificate) or ``mtls`` (clients must present a certificate `ca`
    signed). Not ``off``: YAML reads a bare ``off`` as false.
    The files are PEM, read once at start; a missing or broken one stops the
    start with its key and path named. `modelyard certs dev` writes a set.
    """

    mode: TlsMode = "plaintext"
    cert: Path | None = None  # this server's certificate chain
    key: Path | None = None  # its private key
    # Verifies the clients' certificates (mtls) and, for this process's own
    # calls to the other services, their servers' certificates.
    ca: Path | None = None
    # What this process's calls to the other services present under mtls;
    # absent: `cert` and `key` (one certificate for both ends, as the dev set's).
    client_cert: Path | None = None
    client_key: Path | None = None

    def violations(self) -> Iterator[tuple[str, str]]:
        if self.mode == "plaintext":
            return
        for name in ("cert", "key"):
            if getattr(self, name) is None:
                yield name, f"is required with mode {self.mode}"
        if self.mode == "mtls" and self.ca is None:
            yield "ca", "is required with mode mtls (it verifies the clients' certificates)"
        if (self.client_cert is None) != (self.client_key is None):
            yield "client_cert", "and client_key go together: give both or neither"


def _regex_problem(pattern: str) -> str | None:
    """Why `pattern` cannot serve as a detector: it does not compile or matches nothing."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"'{pattern}' is not a valid regular expression: {exc}"
    if compiled.fullmatch(""):
        return f"'{pattern}' matches the empty string: it would match everywhere"
    return None


_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


@dataclass(frozen=True, kw_only=True)
class CustomPattern:
    """A redacted type of the operator's own: values `pattern` matches become ``[NAME_n]``."""

    name: Annotated[str, NonEmpty()]
    pattern: Annotated[str, NonEmpty()]

    def violations(self) -> Iterator[tuple[str, str]]:
        if not _RULE_NAME.fullmatch(self.name):
            yield "name", f"'{self.name}' must be lower case letters, digits and _ (e.g. staff_id)"
        elif self.name in BUILT_IN_TYPES:
            yield "name", f"'{self.name}' is a built-in type; give the pattern another name"
        problem = _regex_problem(self.pattern)
        if problem:
            yield "pattern", problem


@dataclass(frozen=True, kw_only=True)
class RedactionConfig:
    """PII anonymization before a request leaves the gateway (`gateway.redaction`)."""

    enabled: bool = False
    # The built-in types redacted: email, phone, card, iban, ipv4, ipv6, secret.
    types: tuple[Annotated[str, OneOf(BUILT_IN_TYPES)], ...] = BUILT_IN_TYPES
    custom_patterns: tuple[CustomPattern, ...] = ()

    def violations(self) -> Iterator[tuple[str, str]]:
        names = [p.name for p in self.custom_patterns]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield f"custom_patterns[{i}].name", f"'{name}' is named twice"


@dataclass(frozen=True, kw_only=True)
class DenyRule:
    """A content filter rule: a regex or a list of terms (whole words, any case)."""

    name: Annotated[str, NonEmpty()]
    pattern: str | None = None
    terms: tuple[Annotated[str, NonEmpty()], ...] = ()
    applies_to: tuple[Literal["input", "output"], ...] = ("input", "output")

    def violations(self) -> Iterator[tuple[str, str]]:
        if not _RULE_NAME.fullmatch(self.name):
            yield "name", f"'{self.name}' must be lower case letters, digits and _ (e.g. no_ssn)"
        if (self.pattern is None) == (not self.terms):
            yield "", "set exactly one of 'pattern' or 'terms'"
        if self.pattern is not None:
            problem = _regex_problem(self.pattern)
            if problem:
                yield "pattern", problem
        if not self.applies_to:
            yield "applies_to", "must name input, output or both"


@dataclass(frozen=True, kw_only=True)
class GuardrailsConfig:
    """Input sanitization, output validation, content filter rules (`gateway.guardrails`)."""

    # A control character other than tab, newline and carriage return in the input:
    # the request is refused ("refuse") or the character taken out ("strip").
    control_characters: Literal["refuse", "strip"] = "refuse"
    # The characters of text one request's input may hold, every message together;
    # absent: only security.input_limits.max_input_bytes bounds it.
    max_input_chars: Count | None = None
    # A request with params.response_schema_json: its schema is checked before the
    # call and the final answer validated against it.
    validate_output_schema: bool = True
    deny_rules: tuple[DenyRule, ...] = ()

    def violations(self) -> Iterator[tuple[str, str]]:
        names = [r.name for r in self.deny_rules]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield f"deny_rules[{i}].name", f"'{name}' is named twice"


@dataclass(frozen=True, kw_only=True)
class InputLimitsConfig:
    """Bounds against unbounded consumption, all checked before any backend call.

    Read by the gateway (`gateway/request_limits.py`, `gateway/validation.py`,
    `gateway/batch.py`, `gateway/input_limits.py`); each refusal names its key and
    the value it met. These defaults are the numbers' one home.
    """

    # The bytes of one request's input (text, chat messages, image, audio, tensors):
    # RESOURCE_EXHAUSTED over it.
    max_input_bytes: Count = 1024 * 1024
    # params.max_tokens above this is refused, whatever the model's window.
    max_tokens: Count = 131_072
    # Messages of one chat input (input.chat.messages).
    max_messages: Count = 4_096
    # Models of one Compare: each is a whole generation of the same input.
    max_compare_models: Count = 64
    # Items of one BatchGenerate.
    max_batch_items: Count = 64
    # GenerateStream calls one key (its id; with authentication off, the presented
    # key's fingerprint) holds open on one gateway at once; RESOURCE_EXHAUSTED over it.
    max_streams_per_key: Count = 256
    # A stream whose client takes no chunk for this long is cut (ABORTED,
    # SLOW_READER) and its backend call cancelled; what waits meanwhile is bounded
    # by HTTP/2 flow control (one chunk in the gateway, the window in the client).
    slow_reader_timeout: Seconds = 30.0


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """The append-only audit log of every modelyard call (`modelyard.security.audit`).

    Who (the key's id; "open" when authentication is off), what (the RPC, the
    model asked for and the model that served), when, tokens, cost, outcome and
    latency, time to the first piece and model attempts; never a prompt or an
    answer. The same rows are the usage records (`modelyard usage`). Triggers
    refuse UPDATE and DELETE; rows are written in batches off the request path.
    """

    enabled: bool = True
    # An SQLite file of its own; default: where the other stores are (the
    # ``audit`` schema of server.database_url, else DATA_DIR/audit.sqlite3).
    path: Path | None = None
    # Rows older than this are pruned by the store itself (the only deletion,
    # by age, at start and hourly); absent: kept for ever.
    retention: Seconds | None = 90 * 86_400.0
    # How long a row may wait in memory before its batch is written.
    flush_interval: Seconds = 0.2
    # Rows held in memory at most; past it the oldest waiting ones are dropped,
    # counted and logged (a disk that cannot keep up never stalls the calls).
    max_pending: Count = 100_000


@dataclass(frozen=True, kw_only=True)
class SecurityConfig:
    auth: AuthConfig = field(default_factory=AuthConfig)
    secrets: SecretsConfig = field(default_factory=SecretsConfig)
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    guardrails: GuardrailsConfig = field(default_factory=GuardrailsConfig)
    input_limits: InputLimitsConfig = field(default_factory=InputLimitsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
