"""Test-only entry point: one gateway replica whose API keys live in a shared key store.

    PYTHONPATH=tests python -m security.auth_replica DATA_DIR STORE REFRESH [REDIS_URL]

Requires keys (the admin and service keys from MODELYARD_ADMIN_KEY and
MODELYARD_SERVICE_KEY), keeps them in STORE (shared with the other replicas,
its HMAC secret beside it), looks for changes every REFRESH ("250ms") and,
with REDIS_URL, listens for them on Redis. Serves one scripted model on
127.0.0.1 (a free port), prints "READY <address>" and runs until its stdin
closes or it gets SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Settings, start_stack
from modelyard.config import parse_config
from modelyard.security.auth_mode import auth_from_env


async def main(data_dir: Path, store: Path, refresh: str, redis_url: str | None) -> None:
    redis_line = f"\n      redis_url: {redis_url}" if redis_url else ""
    config = parse_config(
        f"""
model_system:
  security:
    auth:
      required: true
      store: {store}
      refresh_interval: {refresh}{redis_line}
""",
        env={},
    )
    stack = await start_stack(
        Settings(
            config=auth_from_env(config, os.environ),
            listen="127.0.0.1:0",
            roles=("registry", "gateway"),
            data_dir=data_dir,
            assemble_default_model=False,
            discover_ollama=False,
            discovery=False,
        ),
        engines=[ScriptedEngine(("scripted/echo",))],
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
    redis = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], redis))
