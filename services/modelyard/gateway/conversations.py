"""Conversations: a request naming a `conversation_id` continues what was said before.

The gateway keeps each conversation's history (`modelyard.storage`:
`conversations.sqlite3` in the data directory, or the ``conversations`` schema
on the PostgreSQL server `MODELYARD_DATABASE_URL` names): its system message,
if one was given, and its turns, each the caller's messages of one request
with the answer that came back. A request naming the conversation is sent its
system message and as many of the latest turns as fit in the chosen model's context window (with the
request's own input and its `max_tokens`), oldest turns left out first; the
answer says how many turns it carried and how many it left out. The history
is messages, not any model's prompt text: each backend lays it out in its own
model's chat format, so a conversation that spans a swap goes on, on the new
model, with all it said. A turn is stored only once its answer finished;
a failed or cut answer adds nothing.

Only text and chat input take part: an image, audio or tensors request
naming a conversation is refused. On SQLite the store is the gateway's own;
gateway replicas on one PostgreSQL share every conversation, so a
conversation begun through one continues through any other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelyard.model_input import BYTES_PER_TOKEN
from modelyard.storage import DatabaseUrl, StoreSchema, open_store
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2

_TABLES = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    system TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    messages TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
"""
SCHEMA = StoreSchema("conversations", (_TABLES,))

Message = common_pb2.ChatMessage
# What one message costs beyond its text (role, separators) in a chat template.
MESSAGE_OVERHEAD_TOKENS = 4


@dataclass(frozen=True)
class WithHistory:
    """A request with its conversation spliced in, and what to store once it is answered."""

    request: gateway_pb2.GenerateRequest
    history_turns: int  # turns of the history sent
    trimmed_turns: int  # older turns left out to fit the model's context window
    system: str | None  # this request's system message, to keep (None: it gave none)
    new_messages: tuple[Message, ...]  # this turn's messages, besides the system one


def message_tokens(messages: Sequence[Message]) -> int:
    """The estimated tokens of chat messages, as the gateway counts an input's."""
    text_bytes = sum(len(m.content.encode()) for m in messages)
    return text_bytes // BYTES_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS * len(messages)


class ConversationStore:
    """The conversations on disk. Each write is one transaction."""

    def __init__(self, where: Path | DatabaseUrl) -> None:
        """`where`: the SQLite file, or the PostgreSQL server."""
        self._db = open_store(where, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def system(self, conversation_id: str) -> str:
        row = self._db.fetchone("SELECT system FROM conversations WHERE id = ?", (conversation_id,))
        return str(row[0]) if row else ""

    def turns(self, conversation_id: str) -> list[list[Message]]:
        """Every turn, oldest first."""
        rows = self._db.execute(
            "SELECT messages FROM turns WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
        )
        return [[Message(**m) for m in json.loads(text)] for (text,) in rows]

    def add_turn(
        self, conversation_id: str, system: str | None, messages: Sequence[Message]
    ) -> None:
        encoded = json.dumps([{"role": m.role, "content": m.content} for m in messages])
        with self._db.write():
            self._db.execute(
                "INSERT INTO conversations (id, system) VALUES (?, ?) ON CONFLICT (id) DO UPDATE "
                "SET system = CASE WHEN ? THEN excluded.system ELSE conversations.system END",
                (conversation_id, system or "", system is not None),
            )
            self._db.execute(
                "INSERT INTO turns (conversation_id, seq, messages) VALUES (?, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id = ?), ?)",
                (conversation_id, conversation_id, encoded),
            )


class Conversations:
    def __init__(self, store: ConversationStore) -> None:
        self._store = store

    def close(self) -> None:
        self._store.close()

    def with_history(
        self, request: gateway_pb2.GenerateRequest, model: common_pb2.ModelEntry, max_tokens: int
    ) -> WithHistory:
        """`request` with its conversation's system message and latest turns before its input."""
        kind = request.input.WhichOneof("kind")
        if kind == "text":
            given = [Message(role="user", content=request.input.text)]
        elif kind == "chat":
            given = list(request.input.chat.messages)
        else:
            raise InvalidRequest(
                f"conversation_id takes text or chat input, not {kind}", field="conversation_id"
            )
        own_system = [m for m in given if m.role == "system"]
        new = tuple(m for m in given if m.role != "system")
        system = (
            own_system[-1].content if own_system else self._store.system(request.conversation_id)
        )
        head = [Message(role="system", content=system)] if system else []
        turns = self._store.turns(request.conversation_id)
        room = None
        if model.context_window:
            room = model.context_window - max_tokens - message_tokens([*head, *new])
        kept: list[list[Message]] = []
        for turn in reversed(turns):  # newest first: the oldest are left out
            cost = message_tokens(turn)
            if room is not None:
                if cost > room:
                    break
                room -= cost
            kept.append(turn)
        kept.reverse()
        spliced = gateway_pb2.GenerateRequest()
        spliced.CopyFrom(request)
        spliced.input.Clear()
        spliced.input.chat.messages.extend([*head, *(m for t in kept for m in t), *new])
        return WithHistory(
            request=spliced,
            history_turns=len(kept),
            trimmed_turns=len(turns) - len(kept),
            system=own_system[-1].content if own_system else None,
            new_messages=new,
        )

    def record(
        self, request: gateway_pb2.GenerateRequest, context: WithHistory, answer: str
    ) -> None:
        """Store the turn: the request's messages and the answer that finished."""
        messages = [*context.new_messages, Message(role="assistant", content=answer)]
        self._store.add_turn(request.conversation_id, context.system, messages)
