"""The one catalog-id rule: ``<backend name>/<provider model name>``.

The backend name is the key of its `model_system.backends` entry (``local``,
``ollama-gpu``, ``openai-eu``), so two backends of one kind never share an id,
and engines and discovery sources of the same backend always agree.
"""

from __future__ import annotations


def catalog_id(backend: str, model: str) -> str:
    """The catalog id of `model` (the provider's own name) served by backend `backend`."""
    return f"{backend}/{model}"


def split_catalog_id(model_id: str) -> tuple[str, str]:
    """(backend name, provider model name) of a catalog id; the name may contain '/'."""
    backend, _, model = model_id.partition("/")
    return backend, model
