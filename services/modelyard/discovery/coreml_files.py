"""CoreML models (``*.mlmodel`` files, ``*.mlpackage`` folders) in a directory, as a source.

The models are read by the `coreml` backend's `CoreMLModelsDir` (see
`modelyard.backends.coreml.model_files`), the same reading its engine serves.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.backends.coreml.model_files import CoreMLModelsDir
from modelyard.discovery.source import SourceSnapshot


class CoreMLDirectorySource:
    """Every CoreML model directly in `models_dir`; ids are ``<backend>/<name>``."""

    def __init__(self, models_dir: Path, *, backend: str = "coreml") -> None:
        self.models_dir = models_dir
        self.backend = backend
        self._models = CoreMLModelsDir(models_dir, backend=backend)
        self.name = self._models.name

    async def discover(self) -> SourceSnapshot:
        entries, errors = await self._models.read()
        return SourceSnapshot(self.name, entries, errors)
