"""Where CoreML can run, and coremltools imported without its Linux noise."""

from __future__ import annotations

import logging
import platform
from types import ModuleType


def unsupported_reason(system: str | None = None) -> str:
    """Why this host cannot run CoreML predictions, or "" when it can (macOS)."""
    system = system or platform.system()
    if system == "Darwin":
        return ""
    return f"CoreML prediction needs macOS; this host is {system}"


def coremltools() -> ModuleType:
    """Import coremltools; raises ImportError naming the extra that installs it.

    Off macOS, coremltools logs a warning for each native proxy it cannot load;
    reading model specs does not need them, so those warnings are silenced.
    """
    quiet = bool(unsupported_reason())
    logger = logging.getLogger("coremltools")
    level = logger.level
    if quiet:
        logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError as exc:
        raise ImportError(
            "coremltools is not installed: install modelyard with the 'coreml' extra"
        ) from exc
    finally:
        logger.setLevel(level)
    module: ModuleType = ct
    return module
