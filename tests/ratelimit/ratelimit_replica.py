"""Test-only entry point: one gateway replica whose limits live in a shared Redis.

    PYTHONPATH=tests python -m ratelimit.ratelimit_replica DATA_DIR RPM TPM

Reads the limiter from the environment (`MODELYARD_REDIS_URL`...), serves two
scripted models on 127.0.0.1 (a free port): "scripted/rpm" limited to RPM
requests/min and "scripted/tpm" limited to TPM tokens/min, whose engine uses
exactly what the gateway reserved. Prints "READY <address>" and runs until its
stdin closes or it gets SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncGenerator
from pathlib import Path

from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Settings, start_stack
from modelyard.backends.engine import Piece
from modelyard.model_input import estimate_input_tokens
from modelyard.ratelimit.config import LimiterConfig
from modelyard_client.v1 import common_pb2


class FullUseEngine(ScriptedEngine):
    """Reports exactly the estimated input and max_tokens as used: nothing is refunded."""

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        yield Piece("x")
        yield Piece(
            "",
            common_pb2.FINISH_REASON_STOP,
            input_tokens=estimate_input_tokens(model_input),
            output_tokens=params.max_tokens,
        )


async def main(data_dir: Path, rpm: float, tpm: float) -> None:
    stack = await start_stack(
        Settings(
            listen="127.0.0.1:0",
            roles=("registry", "gateway"),
            data_dir=data_dir,
            assemble_default_model=False,
            discover_ollama=False,
            limiter=LimiterConfig.from_env(),
            discovery=False,
        ),
        engines=[
            ScriptedEngine(
                ("scripted/rpm",), limits=common_pb2.RateLimits(requests_per_minute=rpm)
            ),
            FullUseEngine(("scripted/tpm",), limits=common_pb2.RateLimits(tokens_per_minute=tpm)),
        ],
    )
    print(f"READY {stack.address}", flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    stdin = sys.stdin.fileno()

    def on_stdin() -> None:
        if not os.read(stdin, 1):  # closed: the test is over
            done.set()

    loop.add_reader(stdin, on_stdin)
    try:
        await done.wait()
    finally:
        await stack.stop(1)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])))
