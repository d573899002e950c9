"""What goes wrong in a configuration file, said with the key path it went wrong at."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelyard.errors import InvalidRequest


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake: the dotted key path (``model_system.backends.ollama.models[1]``) and why."""

    path: str
    message: str
    line: int | None = None  # 1-based line in the source file, when known

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(InvalidRequest):
    """The configuration is invalid; `problems` holds every mistake found, not only the first."""

    def __init__(self, problems: Sequence[ConfigProblem], source: str | None = None) -> None:
        # In file order, which is how people fix them; problems without a line last.
        self.problems = tuple(sorted(problems, key=lambda p: p.line or 1 << 62))
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One line per problem, ``FILE:LINE: path: message`` when the place is known."""
        out = []
        for problem in self.problems:
            where = self.source or ""
            if where and problem.line is not None:
                where = f"{where}:{problem.line}"
            out.append(f"{where}: {problem}" if where else str(problem))
        return out


class ConfigFileUnreadable(ConfigError):
    """The file is missing or cannot be read (as opposed to read and found wrong)."""


def suggestion(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
