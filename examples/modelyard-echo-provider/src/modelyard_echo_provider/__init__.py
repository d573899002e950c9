"""An example modelyard plug-in: answers from its input alone, so every answer is predictable.

Two models: ``shout`` answers with the last user message upper-cased, ``mirror``
with it reversed. The answer streams one word per piece, a word counts as one
token, and ``max_tokens`` cuts the answer after that many words (finish reason
LENGTH). Option ``prefix``: text put before every answer.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from modelyard.plugins import BaseProvider, Finish, GenerationParams, Message

__all__ = ["EchoProvider"]

_ANSWERS: dict[str, Callable[[str], str]] = {
    "shout": str.upper,
    "mirror": lambda text: text[::-1],
}
_OPTIONS = ("prefix",)
_WORD = re.compile(r"\s*\S+")  # a word with the spaces before it: pieces join back exactly


class EchoProvider(BaseProvider):
    """Echoes the last user message through the model's transformation."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, str],
        api_key: str | None = None,
        *,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(name, options, api_key, endpoint=endpoint)
        # Checked here, not in initialize: a wrong option stops modelyard before it starts.
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; this plug-in takes {', '.join(_OPTIONS)}"
            )
        self.prefix = options.get("prefix", "")

    def list_models(self) -> list[str]:
        return list(_ANSWERS)

    async def generate_text(
        self, model: str, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[str | Finish]:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        answer = self.prefix + _ANSWERS[model](last)
        for count, word in enumerate(_WORD.findall(answer)):
            if params.max_tokens is not None and count == params.max_tokens:
                yield Finish("length")
                return
            yield word

    def count_tokens(self, model: str, text: str) -> int:
        return len(text.split())
