"""What goes wrong in a configuration file, said with the key path it went wrong at.

The error classes and `ConfigProblem` live in `modelyard_client.errors` with every other
error; they are re-exported here, beside the spelling help.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from modelyard_client.errors import ConfigError, ConfigFileUnreadable, ConfigProblem

__all__ = ["ConfigError", "ConfigFileUnreadable", "ConfigProblem", "suggestion"]


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
