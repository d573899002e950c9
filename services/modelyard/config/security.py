"""The ``security:`` section: who may call, what they may spend, what leaves the gateway.

One dataclass per concern, each read by the module that enforces it
(`modelyard.security` and the gateway's stages).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    """Gateway API keys and admin scopes (`modelyard.security.keys`)."""


@dataclass(frozen=True, kw_only=True)
class SecretsConfig:
    """Provider keys: where they are read from, how upstream text is scrubbed."""


@dataclass(frozen=True, kw_only=True)
class BudgetsConfig:
    """Per key and per team request, token and spend budgets."""


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """mTLS between services and towards clients."""


@dataclass(frozen=True, kw_only=True)
class RedactionConfig:
    """PII anonymization before a request leaves the gateway."""


@dataclass(frozen=True, kw_only=True)
class GuardrailsConfig:
    """Input sanitization, output validation, content filter rules."""


@dataclass(frozen=True, kw_only=True)
class InputLimitsConfig:
    """Bounds against unbounded consumption, all checked before any backend call."""


@dataclass(frozen=True, kw_only=True)
class AuditConfig:
    """The append-only audit log of every call."""


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
