"""`modelyard chat MODEL`: talk with a model, one turn per line of stdin.

Each line is a user turn; the answer streams to stdout as the model writes it
(GenerateStream), then a blank line. The CLI keeps the conversation itself and
sends it whole each turn, as chat messages (the ``--system`` message first):
``/reset`` forgets it without a server call, it works on any gateway (its
conversation store need not be on), and the model is sent exactly the turns
shown, no more. ``/exit`` or end of input (Ctrl-D) ends the chat; Ctrl-C during
an answer stops that answer and leaves its turn out, at the prompt it ends the
chat. A refused or failed turn is reported as every command reports an error
and left out of the conversation; the chat goes on, and exits 1 at the end.

On a terminal the CLI shows a ``> `` prompt; from a pipe it reads one turn
per line and shows none.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

from modelyard.commands.client_options import add_address, print_error
from modelyard_client.errors import ModelyardError

RESET = "/reset"
EXIT = "/exit"
# Seconds one answer may take.
ANSWER_TIMEOUT_S = 600.0


def register(sub: Any) -> None:
    """Add ``chat`` to the CLI's subparsers."""
    chat = sub.add_parser(
        "chat",
        help=f"talk with MODEL: a turn per line of stdin, answers streamed; {RESET} forgets "
        f"the conversation, {EXIT} or Ctrl-D ends it",
    )
    chat.add_argument("model", help="a catalog id or alias")
    chat.add_argument("--system", default="", help="a system message sent before the turns")
    chat.add_argument(
        "--max-tokens", type=int, default=0, help="tokens per answer (default: the gateway's)"
    )
    chat.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the model's)"
    )
    add_address(chat)
    chat.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    from modelyard.security.client_channel import channel_for

    read = _reader(sys.stdin)
    with channel_for(args) as channel:
        conversation = Conversation(args.system)
        failed = False
        while (line := read()) is not None:
            text = line.strip()
            if text == EXIT:
                break
            if text == RESET:
                conversation.reset()
                print("(conversation reset)", file=sys.stderr, flush=True)
                continue
            if not text:
                continue
            answer, ok = _turn(channel, args, conversation.with_user(text), sys.stdout)
            failed = failed or not ok
            if answer is not None:
                conversation.add(text, answer)
    return 1 if failed else 0


class Conversation:
    """The turns so far, as (role, content) pairs sent whole with each new one."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.turns: list[tuple[str, str]] = []

    def with_user(self, text: str) -> list[tuple[str, str]]:
        """What the next turn sends: the system message, the turns so far, `text`."""
        head = [("system", self.system)] if self.system else []
        return [*head, *self.turns, ("user", text)]

    def add(self, user: str, assistant: str) -> None:
        self.turns += [("user", user), ("assistant", assistant)]

    def reset(self) -> None:
        self.turns = []


def _turn(
    channel: Any, args: argparse.Namespace, messages: list[tuple[str, str]], out: TextIO
) -> tuple[str | None, bool]:
    """Stream one answer to `out`: its whole text (None when it failed or was stopped),
    and False when it failed."""
    from modelyard_client import remote

    request = remote.generate_request(args.model, messages, args.max_tokens, args.temperature)
    pieces: list[str] = []
    try:
        for piece in remote.stream_text(channel, request, timeout_s=ANSWER_TIMEOUT_S):
            out.write(piece)
            out.flush()
            pieces.append(piece)
    except ModelyardError as exc:
        out.write("\n" if pieces else "")
        out.flush()
        print_error(exc)
        return None, False
    except KeyboardInterrupt:  # the stream is cancelled as the iterator closes
        out.write("\n")
        out.flush()
        print("modelyard: answer stopped; it is left out of the conversation", file=sys.stderr)
        return None, True
    out.write("\n\n")
    out.flush()
    return "".join(pieces), True


def _reader(stdin: TextIO) -> Callable[[], str | None]:
    """The next line of `stdin`, None at its end: with a ``> `` prompt (and line editing)
    when stdin and stdout are a terminal, so a redirected stdout holds only answers."""
    if stdin.isatty() and sys.stdout.isatty():

        def prompted() -> str | None:
            try:
                return input("> ")
            except EOFError:
                print(file=sys.stdout)
                return None

        return prompted

    def piped() -> str | None:
        line = stdin.readline()
        return line if line else None

    return piped
