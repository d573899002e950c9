"""Discovery sources: where the registry learns which models exist.

Each source's `discover()` returns one `SourceSnapshot` (see `source.py`):
Ollama (`ollama.py`), GGUF files (`gguf_files.py`), CoreML models
(`coreml_files.py`), OpenAI-compatible ``/v1/models`` (`openai_compat.py`) and
the hosted API providers with a configured key (`api_providers.py`).
coremltools is imported only when a CoreML directory is read.
"""

from modelyard.discovery.api_providers import (
    ApiProvidersSource,
    HostedBackendKey,
    enabled_from_env,
)
from modelyard.discovery.coreml_files import CoreMLDirectorySource
from modelyard.discovery.gguf_files import GGUFDirectorySource
from modelyard.discovery.ollama import OllamaSource
from modelyard.discovery.openai_compat import OpenAICompatSource
from modelyard.discovery.source import DiscoverySource, SourceSnapshot

__all__ = [
    "ApiProvidersSource",
    "CoreMLDirectorySource",
    "DiscoverySource",
    "GGUFDirectorySource",
    "HostedBackendKey",
    "OllamaSource",
    "OpenAICompatSource",
    "SourceSnapshot",
    "enabled_from_env",
]
