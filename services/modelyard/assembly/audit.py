"""The audit log a server writes, from `security.audit` (`modelyard.security.audit`)."""

from __future__ import annotations

from modelyard.assembly.settings import Settings
from modelyard.security.audit import AuditLog, AuditStore


def audit_log(settings: Settings) -> AuditLog | None:
    """The server's audit log (DATA_DIR/audit.sqlite3 unless `path`); None when disabled."""
    config = settings.config.security.audit
    if not config.enabled:
        return None
    store = AuditStore(config.path or settings.data_dir / "audit.sqlite3")
    return AuditLog(
        store,
        flush_interval_s=config.flush_interval,
        max_pending=config.max_pending,
        retention_s=config.retention,
    )
