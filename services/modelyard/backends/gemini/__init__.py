"""The `gemini` and `vertex` backends: Google's Gemini models, streamed.

One package for both: the Gemini API (AI Studio, an API key) and Vertex AI
(service-account credentials through google-auth) share the
``generateContent`` wire format and its errors; only the URL of a model and
the credential differ (`endpoint`, `auth`). `request` builds the body,
`stream` reads the answer, `upstream` maps failures, `engine` runs the calls.
"""

from modelyard.backends.gemini.auth import ApiKey, ServiceAccountToken
from modelyard.backends.gemini.endpoint import GeminiEndpoint, gemini_models_url, vertex_models_url
from modelyard.backends.gemini.engine import GeminiEngine

__all__ = [
    "ApiKey",
    "GeminiEndpoint",
    "GeminiEngine",
    "ServiceAccountToken",
    "gemini_models_url",
    "vertex_models_url",
]
