"""A real PostgreSQL server for tests (Debian's `postgresql`): 127.0.0.1, a free port.

`initdb` into a temporary directory, then `postgres -D DIR -p PORT -k DIR -c
listen_addresses=127.0.0.1` with durability off (fsync, synchronous_commit,
full_page_writes: a test's data need not survive a power cut), stopped by its
own PID. PostgreSQL refuses to run as root, so as root (CI, this machine) both
run as the `postgres` user (`Popen(user=...)`: the PID is postgres' own), in a
directory of its own under the system's temporary directory (pytest's are
root's, mode 0700) handed to it and removed at `stop`. Trust authentication
on loopback: tests connect as the `postgres` superuser; `fresh_database()` makes
an empty database per test.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

SUPERUSER = "postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin_dir() -> Path | None:
    """Debian's newest /usr/lib/postgresql/N/bin holding initdb, else initdb on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _run_as() -> str | None:
    """The user (and group) to run PostgreSQL's programs as: `postgres` when we are root."""
    return SUPERUSER if os.geteuid() == 0 else None


class PostgresServer:
    """One `postgres` process in a temporary directory; `url(database)` names one of its
    databases."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (scripts/setup installs it)")
        self.bin_dir = bin_dir
        self.workdir = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
        self.data = self.workdir / "data"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{SUPERUSER}:{password}" if password else SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        """initdb (once), start it, and return once it accepts a connection."""
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
        log = self.workdir / "postgres.log"
        if not self.data.exists():
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                cwd=self.workdir,
                user=_run_as(),
                group=_run_as(),
            )
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.bin_dir / "postgres"),
                    *["-D", str(self.data), "-p", str(self.port), "-k", str(self.workdir)],
                    *["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                    *["-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                    *["-c", "max_connections=200", "-c", "shared_buffers=32MB"],
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                user=_run_as(),
                group=_run_as(),
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"postgres exited with {self.proc.returncode}: {tail}"
                    ) from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"postgres did not accept connections in {timeout_s}s"
                    ) from None
                time.sleep(0.1)

    def fresh_database(self) -> str:
        """A new, empty database; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop this server by its own PID (SIGINT: PostgreSQL's "fast" shutdown, sessions
        ended; SIGTERM would wait for them), wait until it is gone, remove its directory."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
