"""ONNX models (``*.onnx`` files) in a directory, as a source.

The models are read by the `tensor` backend's `OnnxModelsDir` (see
`modelyard.backends.tensor.onnx_models`), the same reading its engine serves.
"""

from __future__ import annotations

from modelyard.backends.tensor.onnx_models import OnnxModelsDir
from modelyard.discovery.source import SourceSnapshot


class OnnxDirectorySource:
    """Every model `models` reads; ids are ``<backend>/<name>``."""

    def __init__(self, models: OnnxModelsDir) -> None:
        self._models = models
        self.name = models.name

    async def discover(self) -> SourceSnapshot:
        found, errors = await self._models.read()
        entries = tuple(model.entry(self._models.backend) for model in found.values())
        return SourceSnapshot(self.name, entries, errors)
