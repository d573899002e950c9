"""The audit log a server writes, from `security.audit` (`modelyard.security.audit`)."""

from __future__ import annotations

from modelyard.assembly.settings import Settings
from modelyard.security.audit import AuditLog, AuditStore


def audit_log(settings: Settings) -> AuditLog | None:
    """The server's audit log, None when disabled: the SQLite file `path` when given, else
    where the other stores are (`Settings.store_at`: PostgreSQL's ``audit`` schema when a
    database URL is set, DATA_DIR/audit.sqlite3 when not)."""
    config = settings.config.security.audit
    if not config.enabled:
        return None
    store = AuditStore(config.path or settings.store_at("audit.sqlite3"))
    return AuditLog(
        store,
        flush_interval_s=config.flush_interval,
        max_pending=config.max_pending,
        retention_s=config.retention,
    )
