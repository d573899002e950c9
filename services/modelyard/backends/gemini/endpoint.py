"""Where a Gemini backend sends its calls: the Gemini API (AI Studio) or Vertex AI.

The two speak the same ``generateContent`` wire format; only the URL of a
model and the credential differ:

- ``gemini``: ``{base_url}/v1beta/models/{model}:{method}``, base URL
  https://generativelanguage.googleapis.com, the API key in ``x-goog-api-key``.
- ``vertex``: ``https://{region}-aiplatform.googleapis.com/v1/projects/{project}
  /locations/{region}/publishers/google/models/{model}:{method}`` (region
  ``global``: https://aiplatform.googleapis.com), or the same path below the
  configured ``endpoint``, with a service-account access token.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from modelyard.backends.admission import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE
from modelyard.backends.gemini.auth import CallCredential
from modelyard.backends.gemini.upstream import Upstream

GEMINI_API = "https://generativelanguage.googleapis.com"
GEMINI_API_VERSION = "v1beta"


@dataclass(frozen=True)
class GeminiEndpoint:
    """One Gemini upstream. `models` empty: the hosted catalog's models of `kind`."""

    name: str  # the backend's name: the first part of its catalog ids
    kind: str  # "gemini" or "vertex": which list of the hosted catalog is its own
    root: str  # scheme and host (and any path prefix), for messages and metadata
    models_url: str  # a model's URL is f"{models_url}/{model}", its methods after ':'
    credential: CallCredential
    models: tuple[str, ...] = ()
    timeout_s: float = 120.0
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_queue: int = DEFAULT_MAX_QUEUE

    def method_url(self, model: str, method: str) -> str:
        return f"{self.models_url}/{model}:{method}"

    @property
    def upstream(self) -> Upstream:
        return Upstream(self.name, self.root, self.credential.description)


def gemini_models_url(base_url: str | None) -> tuple[str, str]:
    """(root, models URL) of the Gemini API at `base_url`; a base URL that already ends in
    an API version (``.../v1beta``, ``.../v1``) keeps it."""
    root = (base_url or GEMINI_API).rstrip("/")
    if root.rsplit("/", 1)[-1] in ("v1beta", "v1", "v1alpha"):
        return root, f"{root}/models"
    return root, f"{root}/{GEMINI_API_VERSION}/models"


def vertex_models_url(project: str, region: str, endpoint: str | None) -> tuple[str, str]:
    """(root, models URL) of Google's publisher models in `project` and `region`."""
    if endpoint:
        root = endpoint.rstrip("/")
    elif region == "global":
        root = "https://aiplatform.googleapis.com"
    else:
        root = f"https://{quote(region, '')}-aiplatform.googleapis.com"
    # Quoted: a stray '/' in the configuration must not change which resource is named.
    where = f"projects/{quote(project, '')}/locations/{quote(region, '')}"
    return root, f"{root}/v1/{where}/publishers/google/models"
