"""`modelyard chat MODEL` as a user runs it: its own process, reading turns from a pipe,
against a real in-process stack (registry, gateway and an openai_compat backend) in front
of the fake OpenAI upstream of tests/backends/openai_compat/openai_fake.py (OpenAI's chat
completions wire format and error bodies; see its docstring), which keeps every request
body it gets: so the test sees what each turn sent."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import sys
import time
from typing import Any

import pytest
from backends.openai_compat.openai_fake import (
    STACK_ROLES,
    FakeUpstream,
    chunk,
    openai_error,
)
from conftest import StackFactory

from modelyard.assembly import Stack
from modelyard.config import parse_config

MODEL = "custom/fake-model"
ANSWER = [chunk("Hel", role="assistant"), chunk("lo."), chunk(finish_reason="stop")]
PAUSE_S = 1.5  # before the answer's second piece


@pytest.fixture
async def fake() -> Any:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def stack(make_stack: StackFactory, fake: FakeUpstream) -> Stack:
    config = parse_config(
        f"""
model_system:
  backends:
    custom: {{kind: openai_compat, endpoint: "{fake.url}"}}
"""
    )
    return await make_stack(roles=STACK_ROLES, config=config)


class Chat:
    """`modelyard chat` in a child process, its stdin a pipe the test writes turns to."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, address: str, *flags: str) -> Chat:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "modelyard.cli",
            "chat",
            MODEL,
            "--address",
            address,
            *flags,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        await self.proc.stdin.drain()

    async def read_until(self, text: str, timeout_s: float = 30) -> str:
        assert self.proc.stdout is not None
        data = await asyncio.wait_for(self.proc.stdout.readuntil(text.encode()), timeout_s)
        return data.decode()

    async def err_line(self, timeout_s: float = 30) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.readline(), timeout_s)).decode()

    async def end(self) -> tuple[int, str, str]:
        """Close stdin (Ctrl-D on a terminal): the exit status and what is left of the output."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        out, err = await asyncio.wait_for(self.proc.communicate(), 30)
        return self.proc.returncode or 0, out.decode(), err.decode()


def _messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"]]


async def test_each_turn_streams_and_carries_the_conversation_until_reset(
    stack: Stack, fake: FakeUpstream
) -> None:
    fake.stream_with_pause(ANSWER, pause_before=1, pause_s=PAUSE_S)
    chat = await Chat.start(stack.address, "--system", "Be brief.")

    await chat.say("first")
    assert await chat.read_until("Hel") == "Hel"  # the first piece, before the pause ends
    shown = time.monotonic()
    assert await chat.read_until("\n\n") == "lo.\n\n"
    assert time.monotonic() - shown > PAUSE_S / 2  # it came as the upstream sent it

    await chat.say("second")
    assert await chat.read_until("\n\n") == "Hello.\n\n"
    await chat.say("/reset")
    assert await chat.err_line() == "(conversation reset)\n"
    await chat.say("third")
    code, out, err = await chat.end()

    assert (code, out, err) == (0, "Hello.\n\n", "")
    assert [_messages(body) for body in fake.bodies] == [
        [("system", "Be brief."), ("user", "first")],
        [
            ("system", "Be brief."),
            ("user", "first"),
            ("assistant", "Hello."),
            ("user", "second"),
        ],
        [("system", "Be brief."), ("user", "third")],
    ]
    assert all(body["stream"] for body in fake.bodies)


async def test_a_failed_turn_is_reported_and_left_out_and_exit_ends_the_chat(
    stack: Stack, fake: FakeUpstream
) -> None:
    body = openai_error("Invalid 'messages[0].content': too long.", "invalid_request_error")
    fake.fail(400, body)
    chat = await Chat.start(stack.address)

    await chat.say("first")
    line = await chat.err_line()
    assert line.startswith("modelyard: ") and "too long" in line, line
    assert "[INVALID_ARGUMENT]" in line, line

    fake.stream(ANSWER)
    await chat.say("")  # an empty line sends nothing
    await chat.say("second")
    assert await chat.read_until("\n\n") == "Hello.\n\n"
    await chat.say("/exit")
    await chat.say("never sent")
    code, out, err = await chat.end()

    assert (code, out, err) == (1, "", "")  # 1: a turn failed
    assert [_messages(b) for b in fake.bodies] == [[("user", "first")], [("user", "second")]]


async def test_a_whole_conversation_from_a_pipe(stack: Stack, fake: FakeUpstream) -> None:
    """Every line at once, as `printf ... | modelyard chat MODEL`: one turn per line."""
    fake.stream(ANSWER)
    chat = await Chat.start(stack.address)
    for line in ("one", "two"):
        await chat.say(line)
    code, out, err = await chat.end()
    assert (code, out, err) == (0, "Hello.\n\nHello.\n\n", "")
    assert _messages(fake.bodies[1]) == [("user", "one"), ("assistant", "Hello."), ("user", "two")]


async def test_on_a_terminal_it_prompts_and_ctrl_d_ends_it(
    stack: Stack, fake: FakeUpstream
) -> None:
    fake.stream(ANSWER)
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "modelyard.cli",
        "chat",
        MODEL,
        "--address",
        stack.address,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = await asyncio.to_thread(_read_until, leader, b"", 1)
    os.write(leader, b"hi\n")
    seen = await asyncio.to_thread(_read_until, leader, seen, 2)  # the answer, a new prompt
    os.write(leader, b"\x04")  # Ctrl-D at the prompt
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    os.close(leader)
    assert seen.replace(b"\r\n", b"\n") == b"> hi\nHello.\n\n> "
    assert _messages(fake.bodies[0]) == [("user", "hi")]


def _read_until(fd: int, seen: bytes, prompts: int) -> bytes:
    """`seen` and what `fd` gives next, until it holds `prompts` prompts."""
    deadline = time.monotonic() + 30
    while seen.count(b"> ") < prompts:
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            seen += os.read(fd, 4096)
    return seen


async def test_ctrl_c_stops_the_answer_being_written_and_leaves_it_out(
    stack: Stack, fake: FakeUpstream
) -> None:
    fake.stream_then_hang([chunk("Hel", role="assistant")])
    chat = await Chat.start(stack.address)
    await chat.say("first")
    assert await chat.read_until("Hel") == "Hel"
    chat.proc.send_signal(signal.SIGINT)  # the child's own pid
    assert (
        await chat.err_line() == "modelyard: answer stopped; it is left out of the conversation\n"
    )
    await asyncio.wait_for(fake.disconnected.wait(), 10)  # the upstream call was cancelled

    fake.stream(ANSWER)
    await chat.say("second")
    code, out, err = await chat.end()
    assert (code, out, err) == (0, "\nHello.\n\n", "")
    assert _messages(fake.bodies[1]) == [("user", "second")]
